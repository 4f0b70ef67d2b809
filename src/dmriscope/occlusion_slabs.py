"""Region occlusion for slab models (cnn2d): recompute only the slabs a region touches.

`dmriscope.models.cnn2d.SlabResNet2d` runs one 2D backbone on each 3-slice sagittal slab independently (batch
norm in eval mode uses its running statistics, so a slab's features depend on that slab alone) and a linear head
on the concatenated features. Occluding region r changes only the slabs that contain a voxel of r, so

    logits(x with r occluded) = head(features of x, with the slabs touched by r recomputed)

is exactly the full forward pass (up to float summation order) at a fraction of its cost: on the default grid a
region touches 2-4 of the 12 slabs. The touched slabs of all (subject, region) pairs are sent through the backbone
``batch_size`` slab images at a time. `benchmarks/occlusion.py` times it against Captum and checks the Δp agree.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch

from dmriscope.device import autocast

ProbabilityFn = Callable[[torch.Tensor], torch.Tensor]  # logits -> P(positive) (B,); shared with dmriscope.occlusion


def is_slab_model(model: torch.nn.Module) -> bool:
    """Whether `model` exposes the slab interface used here (``slab_features``, ``backbone``, ``head``, ``n_slabs``)."""
    return all(hasattr(model, name) for name in ("slab_features", "head", "n_slabs", "backbone"))


def touched_slabs(atlas: torch.Tensor, regions: Sequence[int], slab: int) -> list[torch.Tensor]:
    """For each region, the indices of the sagittal slabs (``slab`` slices each) holding at least one of its voxels."""
    present = torch.stack([(atlas == r).flatten(1).any(dim=1) for r in regions])  # (R, S)
    per_slab = present.reshape(len(regions), -1, slab).any(dim=2)  # (R, S / slab)
    return [torch.nonzero(row).flatten() for row in per_slab]


@torch.no_grad()
def occluded_probabilities(
    model: torch.nn.Module,
    x: torch.Tensor,
    atlas: torch.Tensor,
    fill: torch.Tensor,
    prob_fn: ProbabilityFn,
    regions: Sequence[int],
    batch_size: int,
    device: torch.device,
) -> tuple[torch.Tensor, torch.Tensor]:
    """P(positive) of the unoccluded inputs (B,) and of every (subject, region) occluded copy (B * R,), subject-major,
    on `device` (the unoccluded slab features are computed once and serve both).

    x: (B, 1, S, H, W) float32 on `device`; atlas: (S, H, W) on `device`; fill: (B,) the per-subject fill values.
    """
    n_sub, slab = x.shape[0], x.shape[2] // model.n_slabs
    with autocast(device):
        base = model.slab_features(x).float()  # (B, n_slabs, F)
    slabs_of = touched_slabs(atlas, regions, slab)
    # one work item per (subject, region, touched slab): the occluded slab image to recompute
    items = [(i, j, int(k)) for i in range(n_sub) for j in range(len(regions)) for k in slabs_of[j]]
    features = base[:, None].repeat(1, len(regions), 1, 1)  # (B, R, n_slabs, F)
    for start in range(0, len(items), batch_size):
        chunk = np.asarray(items[start : start + batch_size])
        sub, reg, k = (torch.as_tensor(chunk[:, c], device=device) for c in range(3))
        slices = k[:, None] * slab + torch.arange(slab, device=device)  # (n, slab) slice indices
        images = x[sub[:, None], 0, slices]  # (n, slab, H, W)
        region_ids = torch.as_tensor(regions, device=device, dtype=atlas.dtype)[reg]
        inside = atlas[slices] == region_ids[:, None, None, None]
        images = torch.where(inside, fill[sub, None, None, None], images)
        with autocast(device):
            features[sub, reg, k] = model.backbone(images).float()
    with autocast(device):
        before = model.head(base.flatten(1))
        logits = model.head(features.reshape(n_sub * len(regions), -1))
    return prob_fn(before).float().reshape(-1), prob_fn(logits).float().reshape(-1)
