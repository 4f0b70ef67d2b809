"""Test-set evaluation of a trained model: predictions, AUC / accuracy / precision / recall (positive class = male)
with a seeded stratified-bootstrap AUC confidence interval, overall and per age bin, and the ROC / training plots.
`dmriscope.ensemble` pools the runs (folds x seeds) of a model x metric before they are summarised.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from scipy.stats import rankdata
from sklearn.metrics import accuracy_score, precision_score, recall_score, roc_auc_score, roc_curve

from dmriscope.engine import predict
from dmriscope.engine_state import checkpoint_normaliser, load_model, pick_device, torch_threads
from dmriscope.io import InputError, atomic_path
from dmriscope.tensors import VolumeDataset, read_index

log = logging.getLogger(__name__)
POSITIVE_CLASS = "male (label 1); P(male) >= threshold predicts male"
PREDICTION_COLUMNS = ["subject", "sex", "age_bin", "label", "p_female", "p_male"]


def classification_metrics(labels: np.ndarray, p_male: np.ndarray, threshold: float = 0.5) -> dict:
    """AUC (None with one class), accuracy, precision, recall of the male class, and n per class.

    Args:
        labels: (N,) 1 = male, 0 = female.
        p_male: (N,) predicted P(male); ``p_male >= threshold`` predicts male.
    """
    labels = np.asarray(labels).astype(int)
    predicted = (np.asarray(p_male) >= threshold).astype(int)
    both = len(np.unique(labels)) == 2
    return {
        "n": int(labels.size),
        "n_male": int(labels.sum()),
        "n_female": int((labels == 0).sum()),
        "auc": float(roc_auc_score(labels, p_male)) if both else None,
        "accuracy": float(accuracy_score(labels, predicted)),
        "precision": float(precision_score(labels, predicted, zero_division=0)),
        "recall": float(recall_score(labels, predicted, zero_division=0)),
    }


def rank_auc(labels: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """ROC AUC of each row of ``scores`` (B, N) against ``labels`` (N,), from average ranks (Mann-Whitney U;
    ties count one half). Equal to sklearn's roc_auc_score, vectorised over the B rows for the bootstrap."""
    labels = np.asarray(labels).astype(bool)
    n_pos, n_neg = int(labels.sum()), int((~labels).sum())
    ranks = rankdata(np.atleast_2d(scores), axis=1)
    return (ranks[:, labels].sum(axis=1) - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)


def bootstrap_auc_ci(
    labels: np.ndarray, scores: np.ndarray, n_resamples: int = 2000, seed: int = 0, level: float = 0.95
) -> tuple[float, float] | None:
    """Percentile confidence interval of the ROC AUC from a seeded stratified bootstrap.

    Males and females are resampled separately with replacement (every resample keeps the observed class counts,
    so its AUC is always defined). Returns None when a class is absent.
    """
    labels = np.asarray(labels).astype(int)
    scores = np.asarray(scores, dtype=float)
    pos, neg = np.flatnonzero(labels == 1), np.flatnonzero(labels == 0)
    if pos.size == 0 or neg.size == 0:
        return None
    rng = np.random.default_rng(seed)
    y = np.r_[np.ones(pos.size, int), np.zeros(neg.size, int)]
    aucs = np.empty(n_resamples)
    for start in range(0, n_resamples, 500):  # chunks bound the memory at 500 x N
        b = min(500, n_resamples - start)
        take = np.hstack([rng.choice(pos, (b, pos.size)), rng.choice(neg, (b, neg.size))])
        aucs[start : start + b] = rank_auc(y, scores[take])
    alpha = (1.0 - level) / 2
    low, high = np.quantile(aucs, [alpha, 1.0 - alpha])
    return float(low), float(high)


def auc_p_value(labels: np.ndarray, scores: np.ndarray) -> float | None:
    """One-sided p of AUC > 0.5: the Mann-Whitney U test of males' P(male) above females' (U = AUC x n_M x n_F,
    scipy's exact or tie-corrected normal p). None when a class is absent."""
    from scipy.stats import mannwhitneyu

    labels = np.asarray(labels).astype(bool)
    if labels.all() or not labels.any():
        return None
    return float(mannwhitneyu(scores[labels], scores[~labels], alternative="greater").pvalue)


def summarise(
    predictions: pd.DataFrame, n_resamples: int = 2000, seed: int = 0, level: float = 0.95, threshold: float = 0.5
) -> dict:
    """metrics.json content: overall metrics + ``auc_ci``, then the same for every age bin (``by_age_bin``)."""

    def block(frame: pd.DataFrame) -> dict:
        out = classification_metrics(frame["label"].to_numpy(), frame["p_male"].to_numpy(), threshold)
        ci = bootstrap_auc_ci(frame["label"].to_numpy(), frame["p_male"].to_numpy(), n_resamples, seed, level)
        out["auc_ci"] = list(ci) if ci is not None else None
        out["auc_p"] = auc_p_value(frame["label"].to_numpy(), frame["p_male"].to_numpy())
        return out

    summary = {
        "positive_class": POSITIVE_CLASS,
        "threshold": threshold,
        "ci_level": level,
        "ci_method": f"percentile interval, stratified bootstrap, {n_resamples} resamples, seed {seed}",
        **block(predictions),
    }
    summary["by_age_bin"] = {str(b): block(f) for b, f in predictions.groupby("age_bin", sort=True)}
    return summary


def write_results(predictions: pd.DataFrame, summary: dict, out_predictions: str, out_metrics: str) -> None:
    """predictions.tsv (6 decimals) and metrics.json of a model or yardstick, each atomically."""
    with atomic_path(out_predictions) as tmp:
        predictions.to_csv(tmp, sep="\t", index=False, float_format="%.6f")
    with atomic_path(out_metrics) as tmp:
        Path(tmp).write_text(json.dumps(summary, indent=2) + "\n")


def predictions_table(model, dataset: VolumeDataset, device=None, batch_size: int = 8) -> pd.DataFrame:
    """One row per subject of ``dataset``: subject, sex, age_bin, label, p_female, p_male."""
    p_male, labels, _ = predict(model, dataset, pick_device(device), batch_size)
    frame = dataset.index[["subject", "sex", "age_bin"]].copy()
    frame["label"] = labels.astype(int)
    frame["p_female"] = 1.0 - p_male
    frame["p_male"] = p_male
    return frame[PREDICTION_COLUMNS]


def plot_roc(predictions: pd.DataFrame, summary: dict, title: str, path: str | Path) -> None:
    """ROC curve of the test predictions with the AUC and its CI in the legend."""
    fpr, tpr, _ = roc_curve(predictions["label"], predictions["p_male"])
    fig = Figure(figsize=(4, 4), dpi=120)
    ax = fig.subplots()
    ci = summary["auc_ci"]
    label = "AUC undefined (one class)" if summary["auc"] is None else f"AUC {summary['auc']:.3f}"
    label += f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else ""
    ax.plot(fpr, tpr, lw=2, label=label)
    ax.plot([0, 1], [0, 1], ls="--", c="grey", lw=1)
    ax.set(xlabel="false positive rate (female called male)", ylabel="true positive rate (male)", title=title)
    ax.legend(loc="lower right", fontsize=8)
    _save(fig, path)


def plot_history(runs: Sequence[tuple[str, Sequence[dict], int | None]], title: str, path: str | Path) -> None:
    """Training and validation loss (left) and validation AUC (right) per epoch, one line pair per run
    (label, history, selected epoch); the selected epochs dotted."""
    fig = Figure(figsize=(8, 3.2), dpi=120)
    left, right = fig.subplots(1, 2)
    single = len(runs) == 1
    for k, (label, history, best_epoch) in enumerate(runs):
        frame = pd.DataFrame(history)
        colour, width = (None, 1.5) if single else (f"C{k % 10}", 0.8)
        tag = "" if single else f" {label}"
        left.plot(frame["epoch"], frame["train_loss"], c=colour or "C0", lw=width, label=f"train{tag}")
        left.plot(frame["epoch"], frame["val_loss"], c=colour or "C1", lw=width, ls="--", label=f"validation{tag}")
        right.plot(frame["epoch"], frame["val_auc"].astype(float), c=colour or "C2", lw=width, label=label)
        if best_epoch is not None and best_epoch > 0:
            for ax in (left, right):
                ax.axvline(best_epoch, ls=":", c=colour or "grey", lw=1)
    left.set(xlabel="epoch", ylabel="class-weighted loss")
    left.legend(fontsize=6 if not single else 8, ncol=1 if single else 2)
    right.set(xlabel="epoch", ylabel="validation AUC", ylim=(0, 1))
    for ax in (left, right):
        ax.xaxis.get_major_locator().set_params(integer=True)
    fig.suptitle(title, fontsize=10)
    _save(fig, path)


def _save(fig: Figure, path: str | Path) -> None:
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")


def predict_test_files(
    *, checkpoint: str, tensor: str, index: str, brain_mask: str, out_predictions: str, threads: int | None = None
) -> pd.DataFrame:
    """Rule predict_test: P(male) of every test subject of the fold's ``index`` with ``best.pt`` (one run of a
    model x metric x fold x seed; `dmriscope.ensemble` pools the runs into the reported predictions)."""
    with torch_threads(threads):
        model, info = load_model(checkpoint)
        table = read_index(index)
        test = table[table["set"] == "test"]
        if test.empty:
            raise InputError(f"{index}: no test subject")
        dataset = VolumeDataset(tensor, test, checkpoint_normaliser(info, checkpoint), np.load(brain_mask))
        predictions = predictions_table(model, dataset, batch_size=int(info["train"]["batch_size"]))
    with atomic_path(out_predictions) as tmp:
        predictions.to_csv(tmp, sep="\t", index=False, float_format="%.9g")  # float32 round-trips at 9 digits
    log.info("%s: %d test subjects predicted with %s", out_predictions, len(predictions), checkpoint)
    return predictions
