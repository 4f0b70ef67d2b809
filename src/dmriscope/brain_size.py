"""Brain size, the confound registration is meant to remove: each subject's native brain volume, a classifier of
sex from volume alone, and each model's AUC among volume-matched male-female pairs.

- Volume: voxels of the native-space brain mask (``results/raw/sub-*/brain_mask.nii.gz``: the phantom's brain for
  synthetic cohorts, HCP's ``nodif_brain_mask`` for HCP) times the voxel volume from the affine, in mm^3.
- Size-only baseline: per fold, a logistic regression on the standardised volume (scikit-learn), fitted on the
  fold's training subjects and applied to its test subjects; its test AUC says how much of Table 2 size alone
  could give if a model read nothing but size.
- Volume-matched AUC: among all test male-female pairs whose volumes differ by at most a caliper (0.2 pooled SDs of
  the test subjects' volume, the usual matching caliper), the fraction in which the male has the higher P(male)
  (ties count one half). A model that reads size alone falls to ~0.5 here; microstructure survives matching.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from dmriscope.io import InputError, atomic_path, load_nifti

log = logging.getLogger(__name__)
CALIPER_SD = 0.2
VOLUME_COLUMN = "brain_volume_mm3"


def brain_volume(mask_path: str | Path) -> float:
    """The mask's volume in mm^3 (non-zero voxels x |det| of the affine's 3x3 part)."""
    data, affine = load_nifti(mask_path, ndim=3)
    voxels = int(np.count_nonzero(data))
    if voxels == 0:
        raise InputError(f"{mask_path}: the brain mask is empty")
    return voxels * float(abs(np.linalg.det(affine[:3, :3])))


def measure_brain_volumes(*, masks: Sequence[str], subjects: Sequence[str], out: str) -> pd.DataFrame:
    """Rule measure_brain_volumes: one row per subject (subject, brain_volume_mm3)."""
    if len(masks) != len(subjects):
        raise InputError(f"{len(masks)} brain masks for {len(subjects)} subjects")
    frame = pd.DataFrame({"subject": list(subjects), VOLUME_COLUMN: [brain_volume(m) for m in masks]})
    with atomic_path(out) as tmp:
        frame.to_csv(tmp, sep="\t", index=False, float_format="%.1f")
    log.info(
        "%s: %d subjects, volume %.0f-%.0f mm^3",
        out,
        len(frame),
        frame[VOLUME_COLUMN].min(),
        frame[VOLUME_COLUMN].max(),
    )
    return frame


def read_volumes(path: str | Path) -> pd.Series:
    """subject -> brain volume (mm^3) from brain_volumes.tsv."""
    frame = pd.read_csv(path, sep="\t", dtype={"subject": str})
    if VOLUME_COLUMN not in frame.columns:
        raise InputError(f"{path}: no column {VOLUME_COLUMN}")
    return frame.set_index("subject")[VOLUME_COLUMN]


def matched_pairs(labels: np.ndarray, volumes: np.ndarray, caliper: float) -> tuple[np.ndarray, np.ndarray]:
    """Indices (male, female) of every male-female pair whose volumes differ by at most ``caliper``."""
    males, females = np.flatnonzero(labels == 1), np.flatnonzero(labels == 0)
    close = np.abs(volumes[males][:, None] - volumes[females][None, :]) <= caliper
    m, f = np.nonzero(close)
    return males[m], females[f]


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


def volume_matched_subjects(
    participants: pd.DataFrame, volumes: pd.Series, caliper_sd: float = CALIPER_SD
) -> list[str]:
    """A 1:1 male-female matching on brain volume (the volume-matched design of the TIV-controlled sex-difference
    literature): greedy nearest-neighbour pairs without replacement, closest pairs first, each within
    ``caliper_sd`` pooled SDs of volume. Returns the matched subjects (sorted); the others are left out."""
    missing = sorted(set(participants["subject"]) - set(volumes.index))
    if missing:
        raise InputError(f"subject {missing[0]}: no brain volume to match on")
    frame = participants.sort_values("subject")
    males = frame.loc[frame["sex"] == "M", "subject"].to_numpy()
    females = frame.loc[frame["sex"] == "F", "subject"].to_numpy()
    v_m, v_f = volumes.loc[males].to_numpy(float), volumes.loc[females].to_numpy(float)
    caliper = caliper_sd * float(np.std(np.r_[v_m, v_f], ddof=1))
    distance = np.abs(v_m[:, None] - v_f[None, :])
    order = np.argsort(distance, axis=None, kind="stable")
    used_m, used_f, chosen = np.zeros(males.size, bool), np.zeros(females.size, bool), []
    for flat in order:
        i, j = divmod(int(flat), females.size)
        if distance[i, j] > caliper:
            break
        if not used_m[i] and not used_f[j]:
            used_m[i] = used_f[j] = True
            chosen += [males[i], females[j]]
    log.info("volume matching: %d pairs of %d males / %d females (caliper %.0f mm^3)", len(chosen) // 2, males.size,
             females.size, caliper)  # fmt: skip
    return sorted(chosen)


def volume_matched_block(predictions: pd.DataFrame, volumes: str, seed: int = 0, level: float = 0.95) -> dict:
    """metrics.json's ``volume_matched``: `matched_auc` of ``predictions`` (subject, label, p_male) with the
    subjects' volumes from brain_volumes.tsv."""
    size = read_volumes(volumes).loc[predictions["subject"]].to_numpy()
    return matched_auc(predictions["label"], predictions["p_male"], size, seed=seed, level=level)


def size_only_predictions(volumes: pd.Series, folds: Sequence[pd.DataFrame]) -> pd.DataFrame:
    """P(male) from brain volume alone for every fold's test subjects, fitted on that fold's training subjects."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    parts = []
    for k, fold in enumerate(folds):
        missing = sorted(set(fold["subject"]) - set(volumes.index))
        if missing:
            raise InputError(f"subject {missing[0]}: no brain volume")
        train, test = fold[fold["set"] == "train"], fold[fold["set"] == "test"]
        model = make_pipeline(StandardScaler(), LogisticRegression(class_weight="balanced"))
        model.fit(volumes.loc[train["subject"]].to_numpy()[:, None], (train["sex"] == "M").astype(int))
        p_male = model.predict_proba(volumes.loc[test["subject"]].to_numpy()[:, None])[:, 1]
        part = test[["subject", "sex", "age_bin"]].assign(label=(test["sex"] == "M").astype(int))
        parts.append(part.assign(p_female=1 - p_male, p_male=p_male, fold=k))
    return pd.concat(parts, ignore_index=True).sort_values("subject", kind="mergesort").reset_index(drop=True)


def fit_size_baseline(
    *,
    volumes: str,
    folds: Sequence[str],
    out_predictions: str,
    out_metrics: str,
    n_resamples: int = 2000,
    seed: int = 0,
    level: float = 0.95,
) -> dict:
    """Rule fit_size_baseline: the size-only classifier's out-of-sample predictions and metrics.json."""
    from dmriscope.evaluate import summarise, write_results

    table = read_volumes(volumes)
    frames = [pd.read_csv(f, sep="\t", dtype={"subject": str, "age_bin": str}) for f in folds]
    predictions = size_only_predictions(table, frames)
    summary = summarise(predictions, n_resamples, seed, level)
    summary.update(model="size_only", volume_matched=volume_matched_block(predictions, volumes, seed, level))
    write_results(predictions, summary, out_predictions, out_metrics)
    log.info("size-only baseline: test AUC %.3f %s", summary["auc"], summary["auc_ci"])
    return summary
