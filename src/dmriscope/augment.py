"""Training-time augmentations, applied per batch on the CPU with the epoch's seeded generator (so that a resumed
run repeats them exactly).

Region occlusion (`RegionOccluder`): with probability ``p`` a training volume gets 1 to `MAX_REGIONS` atlas regions,
drawn uniformly without replacement, set to the volume's mean white-matter value - exactly the perturbation of
`dmriscope.occlusion`. Why: occlusion asks how much a region matters by removing it, but a model never trained on
removed regions also reacts to the removal itself (a flat patch it has never seen), which lowers its confidence
wherever its receptive fields reach, planted or not. Seen in training, occluded inputs are in-distribution, and a
drop in the correct class at test time means the region carried evidence (the argument of ROAR, Hooker et al.,
NeurIPS 2019). What it changed on the synthetic cohorts is measured in README ("Planted truth").
"""

from __future__ import annotations

import numpy as np
import torch

from dmriscope.io import InputError
from dmriscope.regions import mean_wm_value

MAX_REGIONS = 3


def random_shift(x: torch.Tensor, max_shift: int, generator: torch.Generator) -> torch.Tensor:
    """Shift each volume of ``x`` (B, C, S, H, W) by a random whole number of voxels in [-max_shift, max_shift]
    per axis, zero-filled (no wrap-around)."""
    if max_shift <= 0:
        return x
    out = torch.zeros_like(x)
    shifts = torch.randint(-max_shift, max_shift + 1, (x.shape[0], 3), generator=generator).tolist()
    for b, shift in enumerate(shifts):
        src, dst = [slice(None)], [slice(None)]
        for d, n in zip(shift, x.shape[2:], strict=True):
            src.append(slice(max(0, -d), n - max(0, d)))
            dst.append(slice(max(0, d), n - max(0, -d)))
        out[(b, *dst)] = x[(b, *src)]
    return out


class RegionOccluder:
    """Random region occlusion of training volumes (see the module doc).

    Args:
        atlas: (S, H, W) integer labels on the model grid (0 = background).
        wm_mask: (S, H, W) bool template white-matter mask on the grid.
        p: probability per volume.
    """

    def __init__(self, atlas: np.ndarray, wm_mask: np.ndarray, p: float) -> None:
        self.atlas = torch.as_tensor(np.asarray(atlas, dtype=np.int64))
        self.wm = torch.as_tensor(np.asarray(wm_mask, dtype=bool))
        self.regions = torch.as_tensor([int(r) for r in np.unique(np.asarray(atlas)) if r > 0])
        self.p = float(p)
        if self.atlas.shape != self.wm.shape:
            raise InputError(f"augmentation: atlas grid {tuple(self.atlas.shape)} differs from the WM mask's")
        if p > 0 and (len(self.regions) == 0 or not bool(self.wm.any())):
            raise InputError("config key 'train.augment_occlude': the atlas or the WM mask on the grid is empty")

    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """A copy of ``x`` (B, 1, S, H, W) with regions occluded in some volumes (``x`` itself when p = 0)."""
        if self.p <= 0:
            return x
        if tuple(x.shape[2:]) != tuple(self.atlas.shape):
            raise InputError(
                f"augmentation: input grid {tuple(x.shape[2:])} is not the atlas's {tuple(self.atlas.shape)}"
            )
        chosen = torch.rand(x.shape[0], generator=generator) < self.p
        counts = torch.randint(1, MAX_REGIONS + 1, (x.shape[0],), generator=generator)
        fill = mean_wm_value(x, self.wm)  # the occlusion analysis's own fill value
        out = x.clone()
        for b in torch.nonzero(chosen).flatten().tolist():
            k = min(int(counts[b]), len(self.regions))
            picked = self.regions[torch.randperm(len(self.regions), generator=generator)[:k]]
            out[b, 0][torch.isin(self.atlas, picked)] = fill[b]
        return out
