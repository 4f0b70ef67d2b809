"""Brain size, the confound registration is meant to remove: each subject's native brain volume, and the matching
of males and females on it (before the split, config `split.match: volume`). The size-only classifier and the
volume-matched AUC of every model are scored in `dmriscope.size_baseline`.

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
from dmriscope.label import SEX, Label

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


def volume_matched_subjects(
    participants: pd.DataFrame, volumes: pd.Series, caliper_sd: float = CALIPER_SD, label: Label = SEX
) -> list[str]:
    """A 1:1 male-female matching on brain volume (the volume-matched design of the TIV-controlled sex-difference
    literature): greedy nearest-neighbour pairs without replacement, closest pairs first, each within
    ``caliper_sd`` pooled SDs of volume. Returns the matched subjects (sorted); the others are left out."""
    missing = sorted(set(participants["subject"]) - set(volumes.index))
    if missing:
        raise InputError(f"subject {missing[0]}: no brain volume to match on")
    frame = participants.sort_values("subject")
    males = frame.loc[frame[label.column] == label.positive, "subject"].to_numpy()  # or patients, ...
    females = frame.loc[frame[label.column] == label.negative, "subject"].to_numpy()
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
    log.info("volume matching: %d pairs of %d %s / %d %s (caliper %.0f mm^3)", len(chosen) // 2, males.size,
             label.positive_name, females.size, label.negative_name, caliper)  # fmt: skip
    return sorted(chosen)
