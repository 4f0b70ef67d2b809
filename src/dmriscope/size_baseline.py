"""The size yardsticks of Table 2: a classifier of sex from brain volume alone, each model's AUC among
volume-matched male-female pairs (definitions in `dmriscope.brain_size`'s docstring), and its AUC with brain
volume partialled out.

Partialled AUC: the AUC of the residual of each test subject's logit P(positive) after its least-squares line on
brain volume over the same test subjects is removed. It needs no overlap of the groups' volumes (matching does).
What it keeps is the part of the prediction that volume does not predict, so even a perfect classifier loses the
part of the label that volume predicts: the ``ceiling`` beside it is the same statistic of the labels themselves
(a pure size reader falls to about 0.5, a perfect microstructure reader reaches the ceiling). Only the linear part
is removed: a prediction that is a strongly curved function of volume keeps some of it (matching has no such limit).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import pandas as pd

from dmriscope.brain_size import CALIPER_SD, matched_pairs, read_volumes
from dmriscope.io import InputError
from dmriscope.label import SEX, Label
from dmriscope.scores import positive_class, rank_auc, summarise, write_results

log = logging.getLogger(__name__)


def pair_auc(scores: np.ndarray, male: np.ndarray, female: np.ndarray) -> float | None:
    """Fraction of pairs in which the male scores higher (ties one half); None without pairs."""
    if male.size == 0:
        return None
    diff = scores[male] - scores[female]
    return float(np.mean((diff > 0) + 0.5 * (diff == 0)))


def matched_auc(
    labels: np.ndarray,
    scores: np.ndarray,
    volumes: np.ndarray,
    n_resamples: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> dict:
    """The volume-matched AUC, its number of pairs and caliper, and a percentile CI from a stratified bootstrap of
    subjects (pairs re-formed in every resample)."""
    labels, scores, volumes = np.asarray(labels).astype(int), np.asarray(scores, float), np.asarray(volumes, float)
    caliper = CALIPER_SD * float(np.std(volumes, ddof=1)) if volumes.size > 1 else 0.0
    male, female = matched_pairs(labels, volumes, caliper)
    out = {"auc": pair_auc(scores, male, female), "n_pairs": int(male.size), "caliper_mm3": caliper, "ci": None}
    if out["auc"] is None:
        return out
    rng = np.random.default_rng(seed)
    pos, neg = np.flatnonzero(labels == 1), np.flatnonzero(labels == 0)
    aucs = []
    for _ in range(n_resamples):
        take = np.r_[rng.choice(pos, pos.size), rng.choice(neg, neg.size)]
        m, f = matched_pairs(labels[take], volumes[take], caliper)
        auc = pair_auc(scores[take], m, f)
        if auc is not None:
            aucs.append(auc)
    alpha = (1 - level) / 2
    out["ci"] = [float(v) for v in np.quantile(aucs, [alpha, 1 - alpha])] if aucs else None
    return out


def partialled_scores(scores: np.ndarray, volumes: np.ndarray) -> np.ndarray:
    """Each row of ``scores`` (B, N) minus its least-squares line on the same row of ``volumes`` (B, N); residuals
    within 1e-9 of the row's scale are rounding and set to 0 (a score exactly linear in volume then ties at 0.5)."""
    v = volumes - volumes.mean(axis=1, keepdims=True)
    s = scores - scores.mean(axis=1, keepdims=True)
    slope = (v * s).sum(axis=1, keepdims=True) / np.maximum((v * v).sum(axis=1, keepdims=True), 1e-300)
    residual = s - slope * v
    residual[np.abs(residual) <= 1e-9 * np.abs(s).max(axis=1, keepdims=True)] = 0.0
    return residual


def partialled_auc(
    labels: np.ndarray, p_positive: np.ndarray, volumes: np.ndarray, n_resamples: int = 1000, seed: int = 0,
    level: float = 0.95,
) -> dict:  # fmt: skip
    """metrics.json's ``volume_partialled``: the partialled AUC of logit ``p_positive``, its percentile CI from a
    stratified bootstrap (the line refitted in every resample), and the ``ceiling`` (the labels' own)."""
    labels = np.asarray(labels).astype(int)
    p = np.clip(np.asarray(p_positive, float), 1e-7, 1 - 1e-7)
    logit, volumes = np.log(p / (1 - p)), np.asarray(volumes, float)
    pos, neg = np.flatnonzero(labels == 1), np.flatnonzero(labels == 0)
    if pos.size == 0 or neg.size == 0:
        return {"auc": None, "ci": None, "ceiling": None}
    y = np.r_[np.ones(pos.size, int), np.zeros(neg.size, int)]
    order = np.r_[pos, neg]
    point = partialled_scores(np.stack([logit[order], y.astype(float)]), np.stack([volumes[order]] * 2))
    auc, ceiling = rank_auc(y, point)
    rng = np.random.default_rng(seed)
    take = np.hstack([rng.choice(pos, (n_resamples, pos.size)), rng.choice(neg, (n_resamples, neg.size))])
    aucs = rank_auc(y, partialled_scores(logit[take], volumes[take]))
    alpha = (1 - level) / 2
    ci = [float(v) for v in np.quantile(aucs, [alpha, 1 - alpha])]
    return {"auc": float(auc), "ci": ci, "ceiling": float(ceiling)}


def size_only_predictions(
    volumes: pd.Series, folds: Sequence[pd.DataFrame], label: Label = SEX, fit_sets: Sequence[str] = ("train",)
) -> pd.DataFrame:
    """P(positive) (male by default) from brain volume alone for every fold's test subjects, fitted on that fold's
    ``fit_sets`` subjects (its training subjects; with ``split.match: volume_train`` also those the matching left
    unused, so that the row shows the size signal of the unmatched training part)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    parts = []
    for k, fold in enumerate(folds):
        missing = sorted(set(fold["subject"]) - set(volumes.index))
        if missing:
            raise InputError(f"subject {missing[0]}: no brain volume")
        train, test = fold[fold["set"].isin(list(fit_sets))], fold[fold["set"] == "test"]
        model = make_pipeline(StandardScaler(), LogisticRegression(class_weight="balanced"))
        model.fit(volumes.loc[train["subject"]].to_numpy()[:, None], label.encode(train[label.column]))
        p_positive = model.predict_proba(volumes.loc[test["subject"]].to_numpy()[:, None])[:, 1]
        part = test[["subject", label.column, "age_bin"]].rename(columns={label.column: "group"})
        part = part.assign(label=label.encode(part["group"]))
        parts.append(part.assign(p_negative=1 - p_positive, p_positive=p_positive, fold=k))
    return pd.concat(parts, ignore_index=True).sort_values("subject", kind="mergesort").reset_index(drop=True)


def scored(
    predictions: pd.DataFrame,
    *,
    volumes: str | None,
    n_resamples: int,
    seed: int,
    level: float,
    label: Label = SEX,
    **fields: object,
) -> dict:
    """metrics.json of a model or yardstick: `scores.summarise` of its predictions (positive class: ``label``'s),
    then ``fields`` (its name and what else it records), then, with ``volumes`` (brain_volumes.tsv), the AUC among
    volume-matched pairs and the partialled AUC."""
    summary = {**summarise(predictions, n_resamples, seed, level), **fields}
    summary["positive_class"] = positive_class(label.positive_name)
    if volumes is not None:
        size = read_volumes(volumes).loc[predictions["subject"]].to_numpy()
        labels, p_positive = predictions["label"], predictions["p_positive"]
        summary["volume_matched"] = matched_auc(labels, p_positive, size, seed=seed, level=level)
        summary["volume_partialled"] = partialled_auc(labels, p_positive, size, seed=seed, level=level)
    return summary


def fit_size_baseline(
    *,
    volumes: str,
    folds: Sequence[str],
    out_predictions: str,
    out_metrics: str,
    n_resamples: int = 2000,
    seed: int = 0,
    level: float = 0.95,
    label: dict | None = None,
    fit_sets: Sequence[str] = ("train",),
) -> dict:
    """Rule fit_size_baseline: the size-only classifier's out-of-sample predictions and metrics.json (fitted on
    each fold's ``fit_sets``, `size_only_predictions`)."""
    table = read_volumes(volumes)
    frames = [pd.read_csv(f, sep="\t", dtype={"subject": str, "age_bin": str}) for f in folds]
    group = Label.from_config(label)
    predictions = size_only_predictions(table, frames, group, fit_sets)
    summary = scored(
        predictions, volumes=volumes, n_resamples=n_resamples, seed=seed, level=level, label=group, model="size_only"
    )
    write_results(predictions, summary, out_predictions, out_metrics)
    log.info("size-only baseline: test AUC %.3f %s", summary["auc"], summary["auc_ci"])
    return summary
