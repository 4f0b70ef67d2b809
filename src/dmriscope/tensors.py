"""The tensor store: every subject's registered map on the model grid, in one memory-mapped .npy per metric.

Grid mapping (`to_grid`): each axis is centre-cropped or centre-padded independently, in array order (axis 0 =
sagittal slices, then the two in-plane axes; no transposition, no resampling). For an axis of size ``n`` mapped
to ``g`` voxels:

- ``n >= g`` (crop): source voxels ``[c, c + g)`` are kept, ``c = (n - g) // 2`` (an odd excess drops the extra
  voxel at the high end);
- ``n < g`` (pad): the volume lands at grid voxels ``[p, p + n)``, ``p = (g - n) // 2``, zeros elsewhere (an odd
  excess puts the extra zero at the high end).

The paper: FMRIB58 182x218x182 -> 180x224x224 crops 1 slice at each end of axis 0 and pads 3 / 21 voxels at each
end of axes 1 / 2. The synthetic template 38x46x38 -> 36x48x48 crops 1 | pads 1 | pads 5 at each end.
`from_grid` is the inverse on the kept region. The atlas and masks use the same function.

Normalisation (per metric and fold): the tensor stores raw values (float32) of every subject once; each fold of
the split gets its own index (the subjects' train/val/test set in that fold) and the statistics of its TRAINING
subjects (global mean/SD in ``{metric}_norm.json``, voxel mean/SD in ``{metric}_norm.npy``; `dmriscope.fold_tensors`),
so validation and test data never influence them. `dmriscope.normalise.Normaliser` applies them inside the template
brain mask (template FA > threshold, on the grid) and gives exactly 0 outside; the modes are documented there.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset

from dmriscope.io import InputError, atomic_path, load_nifti, progress
from dmriscope.label import SEX, Label
from dmriscope.normalise import BoundNormaliser, Normaliser
from dmriscope.smoothness import equalise_store
from dmriscope.split import CV, SETS

log = logging.getLogger(__name__)

INDEX_COLUMNS = ["row", "subject", "set", "group", "age_bin", "label"]  # group: the label's value (M/F, ...)


def grid_slices(shape: Sequence[int], grid: Sequence[int]) -> tuple[tuple[slice, ...], tuple[slice, ...]]:
    """Matching (source, destination) slices of the centre crop/pad from ``shape`` to ``grid`` (see module doc)."""
    if len(shape) != len(grid):
        raise ValueError(f"shape {tuple(shape)} and grid {tuple(grid)} differ in dimensions")
    src, dst = [], []
    for n, g in zip(shape, grid, strict=True):
        if n >= g:
            c = (n - g) // 2
            src.append(slice(c, c + g))
            dst.append(slice(0, g))
        else:
            p = (g - n) // 2
            src.append(slice(0, n))
            dst.append(slice(p, p + n))
    return tuple(src), tuple(dst)


def to_grid(volume: np.ndarray, grid: Sequence[int], fill: float = 0) -> np.ndarray:
    """Centre-crop/pad a volume (X, Y, Z) to ``grid`` (S, H, W); same dtype, ``fill`` in padded voxels."""
    src, dst = grid_slices(volume.shape, grid)
    out = np.full(tuple(grid), fill, dtype=volume.dtype)
    out[dst] = volume[src]
    return out


def from_grid(tensor: np.ndarray, shape: Sequence[int], fill: float = 0) -> np.ndarray:
    """Inverse of `to_grid` on the kept region: a grid volume back to template ``shape`` (cropped voxels = fill)."""
    src, dst = grid_slices(shape, tensor.shape)
    out = np.full(tuple(shape), fill, dtype=tensor.dtype)
    out[src] = tensor[dst]
    return out


def brain_mask_on_grid(template_fa: str | Path, grid: Sequence[int], threshold: float = 0.0) -> np.ndarray:
    """The template brain (FA > threshold) on the grid, bool (S, H, W)."""
    fa, _ = load_nifti(template_fa, ndim=3)
    mask = to_grid(fa > threshold, grid, fill=False)
    if not mask.any():
        raise InputError(f"{template_fa}: no voxel above FA {threshold} inside the model grid")
    return mask


def tensor_index(split: pd.DataFrame, split_path: str | Path = "split.tsv", label: Label = SEX) -> pd.DataFrame:
    """Rows of the tensor store: subjects in train/val/test (or cv) in split order; ``group`` is the label's value,
    ``label`` 1 for its positive value (male by default), 0 for the negative."""
    missing = {"subject", label.column, "age_bin", "set"} - set(split.columns)
    if missing:
        raise InputError(f"{split_path}: missing columns {sorted(missing)}")
    used = split[split["set"].isin((*SETS, CV))].reset_index(drop=True)
    bad = used.loc[~used[label.column].astype(str).isin(label.values), "subject"].tolist()
    if bad:
        raise InputError(
            f"{split_path}: subject {bad[0]} has {label.column} other than {label.positive}/{label.negative}"
        )
    if used.empty:
        raise InputError(f"{split_path}: no subject in train/val/test")
    index = used[["subject", "set", label.column, "age_bin"]].rename(columns={label.column: "group"})
    index.insert(0, "row", np.arange(len(index)))
    index["label"] = label.encode(index["group"])
    return index[INDEX_COLUMNS]


def read_index(path: str | Path) -> pd.DataFrame:
    """Read a ``{metric}_index.tsv`` (subject IDs stay strings)."""
    frame = pd.read_csv(path, sep="\t", dtype={"subject": str, "age_bin": str})
    missing = set(INDEX_COLUMNS) - set(frame.columns)
    if missing:
        raise InputError(f"{path}: missing columns {sorted(missing)}")
    return frame


def remove_stale_parts(path: str | Path) -> None:
    """Delete temporaries of ``path`` left by a job that died without cleaning up (SIGBUS, SIGKILL): they can be
    as large as the store itself. Snakemake never runs two jobs for one output at once."""
    path = Path(path)
    if not path.parent.is_dir():
        return
    for stale in path.parent.glob(f".{path.name.split('.')[0]}.*.part{''.join(path.suffixes)}"):
        log.warning("removing %s, a temporary left by an earlier job", stale)
        stale.unlink(missing_ok=True)


def check_free_space(folder: Path, needed: int, out: str | Path) -> None:
    """``InputError`` unless ``folder``'s file system has ``needed`` bytes free (plus 1%): a memory-mapped store
    written on a full disk dies with SIGBUS and an empty log."""
    free = shutil.disk_usage(folder).free
    if free < needed * 1.01:
        raise InputError(f"{out}: needs {needed / 2**30:.2f} GiB, only {free / 2**30:.2f} GiB free in {folder}")


def stack_metric(
    maps: Mapping[str, str | Path],
    index: pd.DataFrame,
    brain_mask: np.ndarray,
    template_shape: Sequence[int],
    out_npy: str | Path,
    smooth_to_fwhm: float | str | None = None,
) -> pd.DataFrame:
    """Write every indexed subject's map, on the grid, as row ``row`` of a float32 (N, S, H, W) .npy; return each
    subject's smoothness (`dmriscope.smoothness.equalise_store`, which blurs the rows to ``smooth_to_fwhm``).

    Written with ``np.lib.format.open_memmap`` to a temporary name and renamed when complete.
    """
    grid = brain_mask.shape
    remove_stale_parts(out_npy)
    with atomic_path(out_npy) as tmp:
        check_free_space(tmp.parent, len(index) * int(np.prod(grid)) * 4, out_npy)
        store = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=(len(index), *grid))
        for row in progress(index.itertuples(index=False), desc="stack", total=len(index)):
            if row.subject not in maps:
                raise InputError(f"subject {row.subject}: no registered map given")
            volume, _ = load_nifti(maps[row.subject], ndim=3)
            if volume.shape != tuple(template_shape):
                raise InputError(
                    f"{maps[row.subject]}: shape {volume.shape} is not the template's {tuple(template_shape)}"
                )
            store[row.row] = to_grid(volume, grid)
        smoothness = equalise_store(store, index["subject"].tolist(), brain_mask, smooth_to_fwhm)
        store.flush()
        del store
    return smoothness


def stack_tensors(
    *,
    maps: Sequence[str | Path],
    subjects: Sequence[str],
    split: str | Path,
    template: str | Path,
    brain_mask: str | Path,
    tensor: str | Path,
    index: str | Path,
    smoothness: str | Path,
    label: Mapping | None = None,
    smooth_to_fwhm: float | str | None = None,
) -> None:
    """Rule stack_tensors for one metric: the .npy store of every split subject, its subject index (``label``:
    config section ``label``, default sex) and each map's smoothness, blurred to ``smooth_to_fwhm`` (config key
    ``tensors.smooth_to_fwhm``) when set."""
    if len(maps) != len(subjects):
        raise InputError(f"{len(maps)} maps for {len(subjects)} subjects")
    frame = pd.read_csv(split, sep="\t", dtype=str, keep_default_na=False)
    table = tensor_index(frame, split, Label.from_config(label))
    mask = np.load(brain_mask)
    template_shape = load_nifti(template, ndim=3)[0].shape
    fwhm = stack_metric(dict(zip(subjects, maps, strict=True)), table, mask, template_shape, tensor, smooth_to_fwhm)
    with atomic_path(smoothness) as tmp:
        table[["subject", "group"]].merge(fwhm, on="subject").to_csv(tmp, sep="\t", index=False, float_format="%.4f")
    by_group = fwhm.assign(group=table["group"].to_numpy()).groupby("group")["fwhm"].mean()
    log.info("mean FWHM (voxels) by group before any blur: %s", by_group.round(3).to_dict())
    with atomic_path(index) as tmp:
        table.to_csv(tmp, sep="\t", index=False)
    log.info("%s: %d subjects, grid %s", tensor, len(table), mask.shape)


def save_npy(array: np.ndarray, path: str | Path) -> None:
    """np.save, atomically."""
    with atomic_path(path) as tmp:
        np.save(tmp, array)


def grid_atlas(
    *,
    atlas: str | Path,
    labels: str | Path,
    wm_mask: str | Path,
    template: str | Path,
    grid: Sequence[int],
    fa_threshold: float,
    out_atlas: str | Path,
    out_labels: str | Path,
    out_wm_mask: str | Path,
    out_brain_mask: str | Path,
) -> None:
    """Rule grid_atlas: atlas (int16), WM mask and brain mask (bool) on the grid, and a copy of the labels."""
    labels_text = Path(labels).read_text() if Path(labels).exists() else None
    if labels_text is None:
        raise InputError(f"{labels}: file not found")
    atlas_data, _ = load_nifti(atlas, ndim=3)
    if np.any(atlas_data != np.round(atlas_data)) or atlas_data.min() < 0:
        raise InputError(f"{atlas}: atlas labels must be non-negative integers")
    save_npy(to_grid(atlas_data.astype(np.int16), grid), out_atlas)
    save_npy(to_grid(load_nifti(wm_mask, ndim=3)[0] > 0, grid, fill=False), out_wm_mask)
    save_npy(brain_mask_on_grid(template, grid, fa_threshold), out_brain_mask)
    with atomic_path(out_labels) as tmp:
        Path(tmp).write_text(labels_text)
    log.info("atlas, WM mask and brain mask on grid %s", tuple(grid))


class VolumeDataset(Dataset):
    """Normalised volumes from the memory-mapped store: item i -> (x float32 (1, S, H, W), y float32 scalar).

    The .npy is opened lazily (per DataLoader worker) with ``mmap_mode='r'``; no NIfTI is ever decompressed.

    Args:
        npy: the ``{metric}.npy`` store (N, S, H, W).
        index: its index table (`read_index`), possibly filtered to some rows.
        norm: the training-set normalisation.
        brain_mask: bool (S, H, W).

    Under confound regression (``norm.regress_out``) the index must carry that covariate per row (the fold index
    does, `dmriscope.fold_tensors`).
    """

    def __init__(self, npy: str | Path, index: pd.DataFrame, norm: Normaliser, brain_mask: np.ndarray) -> None:
        self.npy = str(npy)
        self.index = index.reset_index(drop=True)
        self.rows = self.index["row"].to_numpy(dtype=np.int64)
        self.labels = self.index["label"].to_numpy(dtype=np.float32)
        self.norm = norm
        self.covariates = self._covariates(self.index, norm)
        self.brain_mask = np.asarray(brain_mask, dtype=bool)
        self._store: np.ndarray | None = None
        self._bound: BoundNormaliser | None = None

    @staticmethod
    def _covariates(index: pd.DataFrame, norm: Normaliser) -> np.ndarray | None:
        if norm.regress_out is None:
            return None
        if norm.regress_out not in index.columns:
            raise InputError(f"the tensor index has no {norm.regress_out!r} column, which its normalisation needs")
        return index[norm.regress_out].to_numpy(dtype=np.float64)

    def covariate(self, i: int) -> float | None:
        """Row i's covariate under confound regression, else None."""
        return None if self.covariates is None else float(self.covariates[i])

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def normalise(self) -> BoundNormaliser:
        """The normalisation with the brain mask folded in (built once per dataset)."""
        if self._bound is None:
            self._bound = self.norm.bind(self.brain_mask)
        return self._bound

    @property
    def store(self) -> np.ndarray:
        if self._store is None:
            self._store = np.load(self.npy, mmap_mode="r")
            if self._store.shape[1:] != self.brain_mask.shape:
                raise InputError(f"{self.npy}: grid {self._store.shape[1:]} differs from the brain mask's")
        return self._store

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.normalise(self.store[self.rows[i]], covariate=self.covariate(i))
        return torch.from_numpy(x).unsqueeze(0), torch.tensor(self.labels[i])

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_store": None}  # workers reopen the memmap


def open_dataset(
    npy: str | Path,
    index_tsv: str | Path,
    norm_json: str | Path,
    brain_mask: str | Path,
    sets: Sequence[str],
    *,
    norm_voxels: str | Path | None = None,
) -> VolumeDataset:
    """The dataset of the rows whose set is in ``sets`` (e.g. ``["train"]``), normalised with the fold's training
    statistics (``norm_voxels``: their voxel part, needed in voxel mode)."""
    index = read_index(index_tsv)
    chosen = index[index["set"].isin(list(sets))]
    if chosen.empty:
        raise InputError(f"{index_tsv}: no subject in set(s) {list(sets)}")
    return VolumeDataset(npy, chosen, Normaliser.from_files(norm_json, norm_voxels), np.load(brain_mask))
