"""Input normalisation of the tensor store, with statistics from the TRAINING subjects only.

Two modes (config key ``tensors.normalisation``), both giving float32, exactly 0 outside the template brain mask:

- ``global``: ``(x - mean) / std`` with one mean and one population SD per metric, over the brain-mask voxels of
  all training subjects.
- ``voxel`` (default): ``(x - mean_v) / max(std_v, floor)`` with a mean and a population SD per voxel v, over the
  training subjects; ``floor`` is the `STD_FLOOR_PERCENTILE`-th percentile of the brain-mask voxel SDs, so that
  voxels that hardly vary across subjects are not blown up. Each voxel then reads "how unusual is this subject here",
  in units of the population's spread at that voxel.

In both modes the result is then clipped to ``[-clip, clip]`` (config key ``tensors.clip``; null = no clipping).

Confound regression (config key ``tensors.regress_out: brain_volume``, voxel mode only): before the voxel
normalisation, each voxel's linear dependence on the subject's brain volume is removed, ``x - slope_v * (c - c_mean)``,
with ``slope_v`` the ordinary least-squares slope of the voxel on the volume over the fold's TRAINING subjects (no
label in the model: a within-group slope would be extrapolated across the group difference and leak it back, see
README) and ``mean_v``/``std_v`` those of the residuals. This is cross-validated confound regression (Snoek et al.
2019, NeuroImage 184:741; Dinga et al. 2020, bioRxiv 2020.08.17.255034): the test subjects' maps are corrected with
the slopes learnt on training subjects, so no test information reaches the model.

Why voxel mode is the default: on MD, ventricle and cortex edges vary across subjects far more than white-matter
voxels, so in global units the residual registration error at CSF borders dominates the input and the CNNs
memorise it (the measurement is in README, "The methods, precisely"). ``global`` is kept for comparison.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dmriscope.io import InputError, atomic_path

MODES = ("voxel", "global")
STD_FLOOR_PERCENTILE = 5.0


@dataclass(frozen=True, eq=False)
class Normaliser:
    """``clip((x - mean) / std)`` inside the brain mask, 0 outside (float32).

    ``mean``/``std`` are floats (global mode) or float32 arrays on the model grid (voxel mode, std already floored),
    in the metric's own units; ``clip`` None means no clipping. ``slope`` (voxel mode, confound regression): the
    per-voxel slope on the covariate, centred at ``covariate_mean``; None means no regression.
    """

    mean: float | np.ndarray
    std: float | np.ndarray
    clip: float | None = None
    mode: str = "global"
    summary: dict = field(default_factory=dict)
    slope: np.ndarray | None = None
    covariate_mean: float = 0.0

    def apply(self, x: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """Normalised float32 copy of one whole-grid ``x`` with the bool brain ``mask`` (for repeated use: `bind`)."""
        return self.bind(mask)(x)

    def bind(self, mask: np.ndarray) -> BoundNormaliser:
        """This normalisation with the brain mask folded in, for repeated use (a dataset); a call may take a
        ``region`` of the grid (e.g. one sagittal slab)."""
        return BoundNormaliser(self.mean, self.std, mask, self.clip, self.slope, self.covariate_mean)

    def state(self) -> dict[str, Any]:
        """Everything needed to rebuild it (stored in checkpoints, so that a best.pt is self-contained)."""
        state = {"mode": self.mode, "mean": self.mean, "std": self.std, "clip": self.clip, "summary": self.summary}
        if self.slope is not None:
            state.update(slope=self.slope, covariate_mean=self.covariate_mean)
        return state

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Normaliser:
        return cls(
            mean=state["mean"],
            std=state["std"],
            clip=state.get("clip"),
            mode=state.get("mode", "global"),
            summary=dict(state.get("summary", {})),
            slope=state.get("slope"),
            covariate_mean=float(state.get("covariate_mean", 0.0)),
        )

    @classmethod
    def from_files(cls, norm_json: str | Path, norm_voxels: str | Path | None = None) -> Normaliser:
        """Read a ``{metric}_norm.json`` written by `normalise_fold` and, in voxel mode, its ``norm_voxels`` file
        ((2, S, H, W) float32: voxel mean and floored voxel SD; (3, S, H, W) with the covariate slope third, under
        confound regression), which the rule passes like every other input."""
        path = Path(norm_json)
        if not path.exists():
            raise InputError(f"{path}: file not found")
        stats = json.loads(path.read_text())
        slope, covariate_mean = None, 0.0
        try:
            mode, clip = stats.get("mode", "global"), stats.get("clip")
            if mode == "global":
                mean, std = float(stats["mean"]), float(stats["std"])
            elif mode == "voxel":
                if norm_voxels is None:
                    raise InputError(f"{path}: voxel normalisation needs its voxel statistics (norm_voxels, .npy)")
                regressed = stats.get("regress_out") is not None
                voxels = load_voxel_stats(norm_voxels, regressed=regressed)
                mean, std = voxels[0], voxels[1]
                if regressed:
                    slope, covariate_mean = voxels[2], float(stats["covariate_mean"])
            else:
                raise InputError(f"{path}: normalisation mode {mode!r} is not one of {MODES}")
        except KeyError as exc:
            raise InputError(f"{path}: normalisation file has no {exc}") from None
        if not np.all(np.asarray(std) > 0):
            raise InputError(f"{path}: std must be positive")
        keys = ("mode", "mean", "std", "clip", "std_floor", "regress_out", "covariate_mean", "covariate_r2_median")
        summary = {k: stats[k] for k in keys if k in stats}
        clip = None if clip is None else float(clip)
        return cls(mean, std, clip, mode, summary, slope, covariate_mean)

    @property
    def regress_out(self) -> str | None:
        """The covariate regressed out of every voxel (the index column the dataset reads it from), or None."""
        return self.summary.get("regress_out") if self.slope is not None else None


class BoundNormaliser:
    """``clip(x * scale + offset)`` with ``scale = mask / std`` and ``offset = -mean * mask / std`` precomputed
    (float32): two passes over a sample instead of five, equal to ``(x - mean) / std`` to float32 rounding, and
    exactly +0 outside the mask (x * 0 + 0). Under confound regression a third pass subtracts
    ``(covariate - covariate_mean) * slope * mask / std``."""

    def __init__(
        self,
        mean: float | np.ndarray,
        std: float | np.ndarray,
        mask: np.ndarray,
        clip: float | None,
        slope: np.ndarray | None = None,
        covariate_mean: float = 0.0,
    ) -> None:
        mask = np.asarray(mask, dtype=bool)
        inv = np.float64(1.0) / np.asarray(std, dtype=np.float64)
        self.scale = np.broadcast_to(np.where(mask, inv, 0.0), mask.shape).astype(np.float32)
        self.offset = np.broadcast_to(np.where(mask, -np.asarray(mean, np.float64) * inv, 0.0), mask.shape)
        self.offset = self.offset.astype(np.float32)
        self.slope = None
        if slope is not None:
            self.slope = np.where(mask, np.asarray(slope, np.float64) * inv, 0.0).astype(np.float32)
        self.covariate_mean = float(covariate_mean)
        self.clip = clip

    def __call__(self, x: np.ndarray, region: tuple[slice, ...] = (), covariate: float | None = None) -> np.ndarray:
        out = np.multiply(x, self.scale[region], dtype=np.float32)
        np.add(out, self.offset[region], out=out)
        if self.slope is not None:
            if covariate is None or not np.isfinite(covariate):
                raise InputError(f"confound regression needs each subject's covariate, got {covariate!r}")
            out -= np.float32(covariate - self.covariate_mean) * self.slope[region]
        if self.clip is not None:
            np.clip(out, -self.clip, self.clip, out=out)
        return out


def load_voxel_stats(path: str | Path, regressed: bool = False) -> np.ndarray:
    """The (2, S, H, W) float32 voxel statistics array (mean, floored SD) written by `write_norm`; (3, S, H, W)
    with the covariate slope when ``regressed``."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: file not found (voxel normalisation statistics)")
    voxels = np.load(path)
    planes = 3 if regressed else 2
    if voxels.ndim != 4 or voxels.shape[0] != planes:
        raise InputError(f"{path}: expected ({planes}, S, H, W) voxel statistics, got shape {voxels.shape}")
    return voxels


class RunningMoments:
    """Mean and population variance accumulated chunk by chunk (Chan et al.'s pairwise update, float64).

    Scalar (``axis=None``: every value of every chunk pooled) or per element (``axis=0``: chunks are (k, ...) stacks
    of samples and the moments are per position, e.g. per voxel over subjects).
    """

    def __init__(self, axis: int | None = None) -> None:
        self.axis = axis
        self.n = 0
        self.mean: float | np.ndarray = 0.0
        self.m2: float | np.ndarray = 0.0

    def update(self, values: np.ndarray) -> None:
        values = np.asarray(values, dtype=np.float64)
        if self.axis is None:
            values = values.ravel()
        n_b = values.shape[0] if self.axis == 0 else values.size
        if n_b == 0:
            return
        mean_b = values.mean(axis=self.axis)
        m2_b = ((values - mean_b) ** 2).sum(axis=self.axis)
        n = self.n + n_b
        delta = mean_b - self.mean
        self.mean = self.mean + delta * n_b / n
        self.m2 = self.m2 + m2_b + delta**2 * self.n * n_b / n
        self.n = n

    @property
    def std(self) -> float | np.ndarray:
        if not self.n:
            return float("nan")
        std = np.sqrt(self.m2 / self.n)
        return float(std) if self.axis is None else std


def voxel_statistics(moments: RunningMoments, brain_mask: np.ndarray) -> tuple[np.ndarray, float]:
    """(2, S, H, W) float32 (voxel mean, voxel SD floored at the `STD_FLOOR_PERCENTILE`-th percentile of the brain
    voxels' SDs; mean 0 and SD 1 outside the mask) and that floor."""
    return floored_statistics(np.asarray(moments.mean), np.asarray(moments.std), brain_mask)


def floored_statistics(mean: np.ndarray, std: np.ndarray, brain_mask: np.ndarray) -> tuple[np.ndarray, float]:
    """`voxel_statistics` from a voxel mean and SD."""
    inside = std[brain_mask]
    floor = float(np.percentile(inside, STD_FLOOR_PERCENTILE)) if inside.size else 0.0
    if not floor > 0:
        positive = inside[inside > 0]
        floor = float(positive.min()) if positive.size else 0.0
    if not floor > 0:
        raise InputError("training maps do not vary across subjects at any brain voxel")
    out = np.stack([np.where(brain_mask, mean, 0.0), np.where(brain_mask, np.maximum(std, floor), 1.0)])
    return out.astype(np.float32), floor


def regressed_statistics(
    moments: RunningMoments, cross: np.ndarray, centred: np.ndarray, brain_mask: np.ndarray
) -> tuple[np.ndarray, float, float]:
    """Confound regression's voxel statistics: (3, S, H, W) float32 (voxel mean, floored SD of the residuals, OLS
    slope on the covariate; 0, 1, 0 outside the mask), the SD floor and the median over brain voxels of the
    covariate's R^2.

    ``moments``: per-voxel moments of the training maps; ``cross``: the per-voxel sum over the same subjects of
    ``centred[i] * x_i``; ``centred``: their covariate minus its training mean (so the residuals keep the voxel
    mean, and their variance is the voxel's minus ``slope^2 * var(c)``).
    """
    sum_squares = float(np.dot(centred, centred))
    if not sum_squares > 0:
        raise InputError("the training subjects' covariate does not vary: nothing to regress out")
    slope = np.asarray(cross, np.float64) / sum_squares
    variance = np.asarray(moments.m2, np.float64) / moments.n
    residual = np.maximum(variance - slope**2 * (sum_squares / moments.n), 0.0)
    stats, floor = floored_statistics(np.asarray(moments.mean), np.sqrt(residual), brain_mask)
    varies = brain_mask & (variance > 0)
    r2 = float(np.median(1.0 - residual[varies] / variance[varies])) if varies.any() else 0.0
    out = np.concatenate([stats, np.where(brain_mask, slope, 0.0)[None].astype(np.float32)])
    return out, floor, r2


def write_norm(stats: dict[str, Any], voxels: np.ndarray, out_json: str | Path, out_npy: str | Path) -> None:
    """Write the normalisation JSON and the voxel statistics .npy (both atomically)."""
    with atomic_path(out_npy) as tmp:
        with open(tmp, "wb") as handle:
            np.save(handle, voxels)
    with atomic_path(out_json) as tmp:
        Path(tmp).write_text(json.dumps(stats, indent=2) + "\n")
