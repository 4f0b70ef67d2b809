"""One fold's view of the tensor store: which rows it trains, validates and tests on, and its training statistics.

The store (`dmriscope.tensors`) holds every subject once; a fold (the holdout split is the one-fold case) is an
index with that fold's ``set`` per row and the normalisation statistics of its training rows, accumulated in row
order exactly as they would be while stacking. Training, pretraining, evaluation and occlusion read the fold's
index and statistics, never the store's own index, so no fold's statistics see its validation or test subjects.
Under confound regression (``tensors.regress_out: brain_volume``) the fold's index also carries each subject's
covariate (column ``brain_volume``, mm^3), from which every dataset corrects its maps (`dmriscope.normalise`).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from dmriscope.brain_size import read_volumes
from dmriscope.io import InputError, atomic_path, progress
from dmriscope.normalise import MODES, RunningMoments, regressed_statistics, voxel_statistics, write_norm
from dmriscope.split import SETS, UNUSED
from dmriscope.tensors import read_index

log = logging.getLogger(__name__)
REGRESS_OUT = ("brain_volume",)  # config key tensors.regress_out: the covariates a fold can regress out


def fold_index(store_index: pd.DataFrame, fold: pd.DataFrame, fold_path: str | Path) -> pd.DataFrame:
    """The store's index with each row's ``set`` in this fold; every store subject must be in train/val/test, or
    ``unused`` in this fold only (a training subject left out by ``split.match: volume_train``)."""
    sets = fold.set_index("subject")["set"]
    missing = sorted(set(store_index["subject"]) - set(sets.index))
    if missing:
        raise InputError(f"{fold_path}: subject {missing[0]} of the tensor store is not in this fold's table")
    out = store_index.copy()
    out["set"] = sets.loc[out["subject"]].to_numpy()
    outside = out.loc[~out["set"].isin((*SETS, UNUSED)), "subject"].tolist()
    if outside:
        raise InputError(f"{fold_path}: subject {outside[0]} of the tensor store has no train/val/test set")
    return out


def training_moments(
    store: np.ndarray, index: pd.DataFrame, brain_mask: np.ndarray, covariate: str | None = None
) -> tuple[RunningMoments, RunningMoments, np.ndarray | None, np.ndarray | None]:
    """Pooled (over brain-mask voxels) and per-voxel moments of the training rows, in row order (float64); with a
    ``covariate`` column of ``index``, also its training values minus their mean and the per-voxel sum of those
    times the map (for `regressed_statistics`), else None twice."""
    pooled, per_voxel = RunningMoments(), RunningMoments(axis=0)
    train = index[index["set"] == "train"].sort_values("row")
    centred = None if covariate is None else train[covariate].to_numpy(np.float64)
    centred = None if centred is None else centred - centred.mean()
    cross = None if centred is None else np.zeros(brain_mask.shape)
    for i, row in enumerate(progress(train["row"], desc="normalise", total=len(train))):
        volume = np.asarray(store[row])
        pooled.update(volume[brain_mask])
        per_voxel.update(volume[None])
        if cross is not None:
            cross += centred[i] * volume
    return pooled, per_voxel, centred, cross


def with_covariate(table: pd.DataFrame, covariate: str, volumes: str | Path | None) -> pd.DataFrame:
    """The fold index with each subject's brain volume (mm^3) as column ``covariate``."""
    if covariate not in REGRESS_OUT:
        raise InputError(f"config key 'tensors.regress_out': {covariate!r} is not one of {REGRESS_OUT}")
    if volumes is None:
        raise InputError("config key 'tensors.regress_out': brain_volume needs results/cohort/brain_volumes.tsv")
    known = read_volumes(volumes)
    missing = sorted(set(table["subject"]) - set(known.index))
    if missing:
        raise InputError(f"{volumes}: subject {missing[0]} of the tensor store has no brain volume")
    return table.assign(**{covariate: known.loc[table["subject"]].to_numpy(np.float64)})


def fold_tensors(
    *,
    tensor: str | Path,
    index: str | Path,
    fold: str | Path,
    brain_mask: str | Path,
    out_index: str | Path,
    out_norm: str | Path,
    out_norm_voxels: str | Path,
    mode: str = "voxel",
    clip: float | None = None,
    regress_out: str | None = None,
    volumes: str | Path | None = None,
) -> None:
    """Rule normalise_fold for one metric and fold: the fold's index and its training-set normalisation
    (``mode``, ``clip``, ``regress_out``: config keys ``tensors.normalisation``, ``tensors.clip`` and
    ``tensors.regress_out``; ``volumes``: brain_volumes.tsv, needed for the last)."""
    if mode not in MODES:
        raise InputError(f"config key 'tensors.normalisation': {mode!r} is not one of {MODES}")
    if regress_out is not None and mode != "voxel":
        raise InputError("config key 'tensors.regress_out' needs tensors.normalisation: voxel")
    table = fold_index(read_index(index), pd.read_csv(fold, sep="\t", dtype={"subject": str}), fold)
    if regress_out is not None:
        table = with_covariate(table, regress_out, volumes)
    mask = np.load(brain_mask)
    store = np.load(tensor, mmap_mode="r")
    if store.shape[0] != len(table) or store.shape[1:] != mask.shape:
        raise InputError(f"{tensor}: shape {store.shape} does not match {index} ({len(table)} rows, grid {mask.shape})")
    pooled, per_voxel, centred, cross = training_moments(store, table, mask, regress_out)
    if pooled.n == 0 or not pooled.std > 0:
        raise InputError(f"{tensor}: training maps of {fold} have no variation inside the brain mask")
    regression = {}
    if regress_out is None:
        voxels, floor = voxel_statistics(per_voxel, mask)
    else:
        voxels, floor, r2 = regressed_statistics(per_voxel, cross, centred, mask)
        covariate_mean = float(table.loc[table["set"] == "train", regress_out].mean())
        regression = {"regress_out": regress_out, "covariate_mean": covariate_mean, "covariate_r2_median": r2}
    stats = {
        "mode": mode,
        "clip": clip,
        "mean": pooled.mean,
        "std": pooled.std,
        "n_voxels": pooled.n,
        "std_floor": floor,
        "n_subjects": int((table["set"] == "train").sum()),
        "subjects_from": "train",
        "mask": "template FA > threshold (brain_mask.npy)",
        "normalisation": "see dmriscope.normalise; mean/std: pooled over brain voxels; voxel stats in the .npy",
        **regression,
    }
    with atomic_path(out_index) as tmp:
        table.to_csv(tmp, sep="\t", index=False)
    write_norm(stats, voxels, out_norm, out_norm_voxels)
    log.info(
        "%s: %s; %s normalisation, pooled mean %.6g, std %.6g, voxel SD floor %.6g",
        out_index,
        table["set"].value_counts().to_dict(),
        mode,
        stats["mean"],
        stats["std"],
        floor,
    )
