"""Scores of a classifier's test predictions, torch-free: AUC / accuracy / precision / recall (positive class =
label 1, male by default), a seeded stratified-bootstrap AUC confidence interval and the AUC's p-value, overall and
per age bin, and the predictions.tsv + metrics.json every model and yardstick writes. `dmriscope.evaluate` makes
the predictions of a trained model; `dmriscope.ensemble` pools runs (folds x seeds) before they are scored.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import rankdata
from sklearn.metrics import accuracy_score, precision_score, recall_score, roc_auc_score

from dmriscope.io import atomic_path

POSITIVE_CLASS = "male (label 1); P(positive) >= threshold predicts male"  # the default (sex) label's: `positive_class`


def positive_class(name: str = "male") -> str:
    """metrics.json's statement of the positive class, by the label's positive name."""
    return f"{name} (label 1); P({name}) >= threshold predicts {name}"


PREDICTION_COLUMNS = ["subject", "group", "age_bin", "label", "p_negative", "p_positive"]


def classification_metrics(labels: np.ndarray, p_positive: np.ndarray, threshold: float = 0.5) -> dict:
    """AUC (None with one class), accuracy, precision, recall of the positive class, and n per class.

    Args:
        labels: (N,) 1 = positive, 0 = negative.
        p_positive: (N,) predicted P(positive); ``p_positive >= threshold`` predicts positive.
    """
    labels = np.asarray(labels).astype(int)
    predicted = (np.asarray(p_positive) >= threshold).astype(int)
    both = len(np.unique(labels)) == 2
    return {
        "n": int(labels.size),
        "n_positive": int(labels.sum()),
        "n_negative": int((labels == 0).sum()),
        "auc": float(roc_auc_score(labels, p_positive)) if both else None,
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

    The two classes are resampled separately with replacement (every resample keeps the observed class counts,
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
    """One-sided p of AUC > 0.5: the Mann-Whitney U test of the positive class's P(positive) above the negative's
    (U = AUC x n_pos x n_neg, scipy's exact or tie-corrected normal p). None when a class is absent."""
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
        out = classification_metrics(frame["label"].to_numpy(), frame["p_positive"].to_numpy(), threshold)
        ci = bootstrap_auc_ci(frame["label"].to_numpy(), frame["p_positive"].to_numpy(), n_resamples, seed, level)
        out["auc_ci"] = list(ci) if ci is not None else None
        out["auc_p"] = auc_p_value(frame["label"].to_numpy(), frame["p_positive"].to_numpy())
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
