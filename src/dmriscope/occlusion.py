"""Region occlusion: how much each white-matter region drives a classifier's correct-class probability.

For every test subject and every atlas region r present on the model grid, the region's voxels in the model input
are replaced by the subject's *mean white-matter value* m and the model is run again::

    delta_p(subject, r) = p_correct(x) - p_correct(x with the voxels of region r set to m)

where p_correct is P(positive) for a subject of the positive class (label 1; male by default) and 1 - P(positive)
for one of the negative class. A positive delta_p means the region carried evidence for the correct class.

Mean white-matter value (precise definition): m is one scalar per subject and metric, the mean of that subject's
model input - the normalised map (training-set statistics, `dmriscope.normalise`; 0 outside the template brain) -
over the voxels of the template white-matter mask on the model grid (``results/tensors/wm_mask.npy``). It is the
template WM mask, not the union of the 48 atlas regions. With the default voxel normalisation the input reads
"standard deviations from the training population at this voxel", so filling with m replaces the region by the
subject's typical white-matter deviation (about 0, the population's own value) and removes what is particular to
the region; with global normalisation it is the subject's mean normalised WM value, as in the paper.

Speed: the occluded copies are built on the device by one ``torch.where`` per chunk against region masks computed
from the atlas (``atlas == r``), and (subject, region) pairs are sent through the model ``batch_size`` copies at a
time (across subjects when a batch holds several) instead of one pass per region. The model runs in eval mode
under ``torch.no_grad`` with bf16 autocast on CUDA. ``benchmarks/occlusion.py`` compares this with Captum's
``FeatureAblation``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from dmriscope.device import autocast, pick_device, torch_threads
from dmriscope.evaluate import open_test_set
from dmriscope.io import InputError, atomic_path, progress
from dmriscope.models import positive_probability
from dmriscope.occlusion_slabs import ProbabilityFn, is_slab_model, occluded_probabilities
from dmriscope.regions import atlas_regions, mean_wm_value, read_labels

log = logging.getLogger(__name__)

DELTA_P_COLUMNS = ("subject", "label", "region", "name", "p_before", "p_after", "delta_p")


@dataclass
class OcclusionResult:
    """Correct-class probabilities of B subjects before and after occluding each of R regions.

    p_before: (B,) float64; p_after: (B, R) float64; regions: the R atlas indices, in column order.
    """

    p_before: np.ndarray
    p_after: np.ndarray
    regions: list[int]

    @property
    def delta_p(self) -> np.ndarray:
        """(B, R) p_before - p_after."""
        return self.p_before[:, None] - self.p_after


def correct_class_probability(p_positive: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """P(correct class): p_positive where label == 1, 1 - p_positive where label == 0. Shapes (B,) -> (B,)."""
    p_positive = p_positive.float().reshape(-1)
    return torch.where(labels.reshape(-1).to(p_positive.device) == 1, p_positive, 1.0 - p_positive)


def _forward_probability(
    model: torch.nn.Module, x: torch.Tensor, prob_fn: ProbabilityFn, device: torch.device
) -> torch.Tensor:
    """P(positive) for a batch (B, 1, S, H, W) -> (B,) float32 on `device`; bf16 autocast on CUDA."""
    with autocast(device):
        return prob_fn(model(x)).float().reshape(-1)


def _occluded_volumes_probabilities(
    model: torch.nn.Module,
    x: torch.Tensor,
    atlas: torch.Tensor,
    fill: torch.Tensor,
    prob_fn: ProbabilityFn,
    regions: Sequence[int],
    batch_size: int,
    device: torch.device,
) -> torch.Tensor:
    """P(positive) of every (subject, region) occluded volume, (B * R,) subject-major, ``batch_size`` volumes a pass."""
    n_sub, n_reg = x.shape[0], len(regions)
    region_ids = torch.as_tensor(regions, device=device, dtype=atlas.dtype)
    pairs_subject = torch.arange(n_sub, device=device).repeat_interleave(n_reg)
    pairs_region = torch.arange(n_reg, device=device).repeat(n_sub)
    p_positive = torch.empty(n_sub * n_reg, device=device)
    for start in range(0, n_sub * n_reg, batch_size):
        sub = pairs_subject[start : start + batch_size]
        reg = pairs_region[start : start + batch_size]
        mask = (atlas[None] == region_ids[reg, None, None, None])[:, None]  # (k, 1, S, H, W)
        occluded = torch.where(mask, fill[sub, None, None, None, None], x[sub])
        p_positive[start : start + batch_size] = _forward_probability(model, occluded, prob_fn, device)
    return p_positive


@torch.no_grad()
def occlude_batch(
    model: torch.nn.Module,
    x: torch.Tensor,
    labels: torch.Tensor,
    atlas: torch.Tensor,
    wm_mask: torch.Tensor,
    prob_fn: ProbabilityFn,
    regions: Sequence[int] | None = None,
    batch_size: int = 16,
    device: torch.device | None = None,
) -> OcclusionResult:
    """Occlude every region of every subject in `x`, `batch_size` occluded copies per forward pass.

    model: maps (N, 1, S, H, W) to logits; prob_fn: logits -> P(positive) (N,). x: (B, 1, S, H, W) normalised input;
    labels: (B,) 1 = positive, 0 = negative; atlas: (S, H, W) integer labels (0 = background); wm_mask: (S, H, W) bool.
    regions: atlas indices to occlude (default: all present). The model is put in eval mode.
    """
    if x.ndim != 5 or x.shape[1] != 1 or tuple(x.shape[2:]) != tuple(atlas.shape):
        raise InputError(f"occlusion: input shape {tuple(x.shape)} does not match atlas grid {tuple(atlas.shape)}")
    if batch_size < 1:
        raise InputError(f"config key 'occlusion.batch_size': must be >= 1, got {batch_size}")
    device = device or next(model.parameters()).device
    regions = list(regions) if regions is not None else atlas_regions(atlas.cpu().numpy())
    model.eval()
    x = x.to(device=device, dtype=torch.float32)
    atlas = atlas.to(device)
    fill = mean_wm_value(x, wm_mask.to(device))
    n_sub, n_reg = x.shape[0], len(regions)
    if is_slab_model(model):  # cnn2d: recompute only the slabs a region touches (dmriscope.occlusion_slabs)
        slab_batch = batch_size * model.n_slabs
        p_positive_before, p_positive = occluded_probabilities(
            model, x, atlas, fill, prob_fn, regions, slab_batch, device
        )
    else:
        p_positive_before = _forward_probability(model, x, prob_fn, device)
        p_positive = _occluded_volumes_probabilities(model, x, atlas, fill, prob_fn, regions, batch_size, device)
    p_before = correct_class_probability(p_positive_before, labels)
    p_after = correct_class_probability(p_positive, labels.repeat_interleave(n_reg))
    return OcclusionResult(
        p_before=p_before.double().cpu().numpy(),
        p_after=p_after.reshape(n_sub, n_reg).double().cpu().numpy(),
        regions=regions,
    )


def occlude_dataset(
    model: torch.nn.Module,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    subjects: Sequence[str],
    atlas: np.ndarray,
    wm_mask: np.ndarray,
    names: dict[int, str],
    prob_fn: ProbabilityFn,
    batch_size: int = 16,
    device: torch.device | None = None,
) -> pd.DataFrame:
    """Occlusion of every test subject, as the long table of `DELTA_P_COLUMNS` (one row per subject x region).

    batches: (x (B, 1, S, H, W), labels (B,)) in the order of `subjects`; atlas (S, H, W) int; wm_mask (S, H, W)
    bool; names: atlas index -> region name.
    """
    atlas_t = torch.as_tensor(np.asarray(atlas, dtype=np.int64))
    wm_t = torch.as_tensor(np.asarray(wm_mask, dtype=bool))
    regions = atlas_regions(atlas)
    missing = [r for r in regions if r not in names]
    if missing:
        raise InputError(f"occlusion: atlas labels {missing[:5]} have no name in the labels table")
    log.info("occluding %d regions of %d subjects, %d copies per pass", len(regions), len(subjects), batch_size)
    frames, seen = [], 0
    for x, labels in progress(batches, desc="occlusion"):
        res = occlude_batch(model, x, labels, atlas_t, wm_t, prob_fn, regions, batch_size, device)
        n = x.shape[0]
        frames.append(_long_table(res, list(subjects[seen : seen + n]), labels.cpu().numpy(), names))
        seen += n
    if seen != len(subjects):
        raise InputError(f"occlusion: {seen} inputs for {len(subjects)} subjects")
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=list(DELTA_P_COLUMNS))


def _long_table(res: OcclusionResult, subjects: list[str], labels: np.ndarray, names: dict[int, str]) -> pd.DataFrame:
    n_sub, n_reg = res.p_after.shape
    return pd.DataFrame(
        {
            "subject": np.repeat(subjects, n_reg),
            "label": np.repeat(labels.astype(int), n_reg),
            "region": np.tile(res.regions, n_sub),
            "name": np.tile([names[r] for r in res.regions], n_sub),
            "p_before": np.repeat(res.p_before, n_reg),
            "p_after": res.p_after.reshape(-1),
            "delta_p": res.delta_p.reshape(-1),
        }
    )


@torch.no_grad()
def occlude_one_at_a_time(
    model: torch.nn.Module,
    x: torch.Tensor,
    labels: torch.Tensor,
    atlas: torch.Tensor,
    wm_mask: torch.Tensor,
    prob_fn: ProbabilityFn,
    regions: Sequence[int],
) -> OcclusionResult:
    """Reference implementation: one subject, one region, one forward pass at a time (for tests and benchmarks)."""
    model.eval()
    p_before = np.empty(x.shape[0])
    p_after = np.empty((x.shape[0], len(regions)))
    for i in range(x.shape[0]):
        xi = x[i : i + 1].float()
        fill = float(xi[0, 0][wm_mask].mean())
        p_before[i] = float(correct_class_probability(prob_fn(model(xi)), labels[i : i + 1]))
        for j, r in enumerate(regions):
            occluded = xi.clone()
            occluded[0, 0][atlas == r] = fill
            p_after[i, j] = float(correct_class_probability(prob_fn(model(occluded)), labels[i : i + 1]))
    return OcclusionResult(p_before, p_after, list(regions))


@torch.no_grad()
def occlude_captum(
    model: torch.nn.Module,
    x: torch.Tensor,
    labels: torch.Tensor,
    atlas: torch.Tensor,
    wm_mask: torch.Tensor,
    prob_fn: ProbabilityFn,
    regions: Sequence[int],
    perturbations_per_eval: int = 1,
) -> OcclusionResult:
    """The same occlusion through Captum's FeatureAblation (for tests and benchmarks).

    feature_mask = the atlas (background 0 is ablated too and ignored), baselines = the subject's mean WM value,
    target = the correct class of the probability output [P(negative), P(positive)]; Captum's attribution of a region's
    voxels is then p_before - p_after.
    """
    from captum.attr import FeatureAblation

    model.eval()

    def forward(inputs: torch.Tensor) -> torch.Tensor:
        p_positive = prob_fn(model(inputs)).float().reshape(-1)
        return torch.stack([1.0 - p_positive, p_positive], dim=1)

    ablator = FeatureAblation(forward)
    feature_mask = atlas.long()[None, None]
    first_voxel = {r: tuple(torch.nonzero(atlas == r)[0].tolist()) for r in regions}
    p_before = np.empty(x.shape[0])
    delta = np.empty((x.shape[0], len(regions)))
    for i in range(x.shape[0]):
        xi = x[i : i + 1].float()
        fill = float(xi[0, 0][wm_mask].mean())
        target = int(labels[i])
        p_before[i] = float(forward(xi)[0, target])
        attr = ablator.attribute(
            xi, baselines=fill, target=target, feature_mask=feature_mask, perturbations_per_eval=perturbations_per_eval
        )
        delta[i] = [float(attr[0, 0][first_voxel[r]]) for r in regions]
    return OcclusionResult(p_before, p_before[:, None] - delta, list(regions))


def occlude_model_files(
    *,
    checkpoint: str,
    tensor: str,
    index: str,
    brain_mask: str,
    atlas: str,
    wm_mask: str,
    labels: str,
    delta_p: str,
    batch_size: int = 16,
    device: str | None = None,
    threads: int | None = None,
) -> pd.DataFrame:
    """Rule occlude_regions: occlude every region of every test subject with ``best.pt``; write delta_p.tsv.

    tensor/index: the metric's store and its index; brain_mask, atlas, wm_mask: the grid .npy files; labels: the
    atlas labels TSV. The normalisation is the checkpoint's (training-set statistics), as in evaluation.
    """
    with torch_threads(threads):
        model, info, dataset = open_test_set(checkpoint, tensor, index, brain_mask, device)
        test = dataset.index
        atlas_data, wm = np.load(atlas), np.load(wm_mask).astype(bool)
        if atlas_data.shape != dataset.brain_mask.shape or wm.shape != atlas_data.shape:
            raise InputError(f"{atlas}: grid {atlas_data.shape} differs from the brain mask's or the WM mask's")
        n_regions = max(len(atlas_regions(atlas_data)), 1)
        per_load = max(1, -(-batch_size // n_regions))  # subjects per loader batch, to fill the occlusion batches
        loader = torch.utils.data.DataLoader(dataset, batch_size=per_load, shuffle=False)
        frame = occlude_dataset(
            model,
            loader,
            list(test["subject"]),
            atlas_data,
            wm,
            read_labels(labels),
            positive_probability,
            batch_size,
            pick_device(device),
        )
    with atomic_path(delta_p) as tmp:
        frame.to_csv(tmp, sep="\t", index=False, float_format="%.9g")
    log.info(
        "%s: %d subjects x %d regions, median delta_p %.4f",
        info.get("model", checkpoint),
        frame["subject"].nunique(),
        frame["region"].nunique(),
        frame["delta_p"].median(),
    )
    return frame
