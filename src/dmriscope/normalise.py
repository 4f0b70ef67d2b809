"""Input normalisation of the tensor store, with statistics from the TRAINING subjects only.

Two modes (config key ``tensors.normalisation``), both giving float32, exactly 0 outside the template brain mask:

- ``global``: ``(x - mean) / std`` with one mean and one population SD per metric, over the brain-mask voxels of
  all training subjects.
- ``voxel`` (default): ``(x - mean_v) / max(std_v, floor)`` with a mean and a population SD per voxel v, over the
  training subjects; ``floor`` is the `STD_FLOOR_PERCENTILE`-th percentile of the brain-mask voxel SDs, so that
  voxels that hardly vary across subjects are not blown up. Each voxel then reads "how unusual is this subject here",
  in units of the population's spread at that voxel.

In both modes the result is then clipped to ``[-clip, clip]`` (config key ``tensors.clip``; null = no clipping).

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
    in the metric's own units; ``clip`` None means no clipping.
    """

    mean: float | np.ndarray
    std: float | np.ndarray
    clip: float | None = None
    mode: str = "global"
    summary: dict = field(default_factory=dict)

    def apply(self, x: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """Normalised float32 copy of one whole-grid ``x`` with the bool brain ``mask`` (for repeated use: `bind`)."""
        return self.bind(mask)(x)

    def bind(self, mask: np.ndarray) -> BoundNormaliser:
        """This normalisation with the brain mask folded in, for repeated use (a dataset); a call may take a
        ``region`` of the grid (e.g. one sagittal slab)."""
        return BoundNormaliser(self.mean, self.std, mask, self.clip)

    def state(self) -> dict[str, Any]:
        """Everything needed to rebuild it (stored in checkpoints, so that a best.pt is self-contained)."""
        return {"mode": self.mode, "mean": self.mean, "std": self.std, "clip": self.clip, "summary": self.summary}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Normaliser:
        return cls(
            mean=state["mean"],
            std=state["std"],
            clip=state.get("clip"),
            mode=state.get("mode", "global"),
            summary=dict(state.get("summary", {})),
        )

    @classmethod
    def from_files(cls, norm_json: str | Path, norm_voxels: str | Path | None = None) -> Normaliser:
        """Read a ``{metric}_norm.json`` written by `normalise_fold` and, in voxel mode, its ``norm_voxels`` file
        ((2, S, H, W) float32: voxel mean and floored voxel SD), which the rule passes like every other input."""
        path = Path(norm_json)
        if not path.exists():
            raise InputError(f"{path}: file not found")
        stats = json.loads(path.read_text())
        try:
            mode, clip = stats.get("mode", "global"), stats.get("clip")
            if mode == "global":
                mean, std = float(stats["mean"]), float(stats["std"])
            elif mode == "voxel":
                if norm_voxels is None:
                    raise InputError(f"{path}: voxel normalisation needs its voxel statistics (norm_voxels, .npy)")
                voxels = load_voxel_stats(norm_voxels)
                mean, std = voxels[0], voxels[1]
            else:
                raise InputError(f"{path}: normalisation mode {mode!r} is not one of {MODES}")
        except KeyError as exc:
            raise InputError(f"{path}: normalisation file has no {exc}") from None
        if not np.all(np.asarray(std) > 0):
            raise InputError(f"{path}: std must be positive")
        summary = {k: stats[k] for k in ("mode", "mean", "std", "clip", "std_floor") if k in stats}
        return cls(mean=mean, std=std, clip=None if clip is None else float(clip), mode=mode, summary=summary)


class BoundNormaliser:
    """``clip(x * scale + offset)`` with ``scale = mask / std`` and ``offset = -mean * mask / std`` precomputed
    (float32): two passes over a sample instead of five, equal to ``(x - mean) / std`` to float32 rounding, and
    exactly +0 outside the mask (x * 0 + 0)."""

    def __init__(self, mean: float | np.ndarray, std: float | np.ndarray, mask: np.ndarray, clip: float | None) -> None:
        mask = np.asarray(mask, dtype=bool)
        inv = np.float64(1.0) / np.asarray(std, dtype=np.float64)
        self.scale = np.broadcast_to(np.where(mask, inv, 0.0), mask.shape).astype(np.float32)
        self.offset = np.broadcast_to(np.where(mask, -np.asarray(mean, np.float64) * inv, 0.0), mask.shape)
        self.offset = self.offset.astype(np.float32)
        self.clip = clip

    def __call__(self, x: np.ndarray, region: tuple[slice, ...] = ()) -> np.ndarray:
        out = np.multiply(x, self.scale[region], dtype=np.float32)
        np.add(out, self.offset[region], out=out)
        if self.clip is not None:
            np.clip(out, -self.clip, self.clip, out=out)
        return out


def load_voxel_stats(path: str | Path) -> np.ndarray:
    """The (2, S, H, W) float32 voxel statistics array (mean, floored SD) written by `write_norm`."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: file not found (voxel normalisation statistics)")
    voxels = np.load(path)
    if voxels.ndim != 4 or voxels.shape[0] != 2:
        raise InputError(f"{path}: expected (2, S, H, W) voxel statistics, got shape {voxels.shape}")
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
    std = np.asarray(moments.std)
    inside = std[brain_mask]
    floor = float(np.percentile(inside, STD_FLOOR_PERCENTILE)) if inside.size else 0.0
    if not floor > 0:
        positive = inside[inside > 0]
        floor = float(positive.min()) if positive.size else 0.0
    if not floor > 0:
        raise InputError("training maps do not vary across subjects at any brain voxel")
    out = np.stack([np.where(brain_mask, moments.mean, 0.0), np.where(brain_mask, np.maximum(std, floor), 1.0)])
    return out.astype(np.float32), floor


def write_norm(stats: dict[str, Any], voxels: np.ndarray, out_json: str | Path, out_npy: str | Path) -> None:
    """Write the normalisation JSON and the voxel statistics .npy (both atomically)."""
    with atomic_path(out_npy) as tmp:
        with open(tmp, "wb") as handle:
            np.save(handle, voxels)
    with atomic_path(out_json) as tmp:
        Path(tmp).write_text(json.dumps(stats, indent=2) + "\n")
