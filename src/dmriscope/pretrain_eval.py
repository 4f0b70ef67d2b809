"""How well a masked autoencoder predicts what it cannot see, against the population-mean predictor.

The baseline a MAE must beat is not 0 but the training population's mean in the MAE's own target space
(`mean_target`: the mean of the training patches; with norm_pix_loss, the mean of the per-patch normalised ones).
With voxel-wise normalisation that mean is ~0 everywhere, so "predict 0" is the baseline; with global
normalisation it is the mean anatomy, which already predicts most of a masked patch. A MAE whose masked-patch loss
equals the baseline's has learnt nothing about the subject in front of it; the ratio MAE / baseline (< 1 is
better) is written to the pretraining history for validation subjects, every epoch, with the same seeded masks.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from dmriscope.models.mae import MaskedAutoencoder, masked_mse, normalise_patches, patchify

Pair = tuple[torch.Tensor, torch.Tensor]  # (input x (C, *img), the population mean's patches (N, P) in target space)


def population_mean(dataset: Dataset) -> torch.Tensor:
    """Voxel-wise mean of the (normalised) volumes (1, S, H, W) of ``dataset`` (float64 sum, float32 result)."""
    total: np.ndarray | None = None
    for i in range(len(dataset)):
        x = dataset[i][0].numpy().astype(np.float64)
        total = x if total is None else total + x
    if total is None:
        raise ValueError("population_mean: empty dataset")
    return torch.from_numpy((total / len(dataset)).astype(np.float32))


def _items(volume: torch.Tensor, slab: int | None) -> torch.Tensor:
    """A volume (1, S, H, W) as the MAE's samples: (1, 1, S, H, W) in 3D, (S / slab, slab, H, W) slabs in 2D."""
    return volume[None] if slab is None else volume[0].reshape(-1, slab, *volume.shape[2:])


def mean_target(dataset: Dataset, patch: Sequence[int], norm_pix: bool, slab: int | None = None) -> torch.Tensor:
    """The population-mean predictor in the MAE loss's own target space: the mean over ``dataset``'s volumes of
    their patch values (each patch normalised first with ``norm_pix``, as the loss normalises its targets), per
    sample position: (1, N, P) in 3D, (S / slab, N, P) for the slabs of the 2D stage."""
    total: torch.Tensor | None = None
    for i in range(len(dataset)):
        patches = patchify(_items(dataset[i][0], slab), patch).double()
        if norm_pix:
            patches = normalise_patches(patches)
        total = patches if total is None else total + patches
    if total is None:
        raise ValueError("mean_target: empty dataset")
    return (total / len(dataset)).float()


def pairs(dataset: Dataset, target: torch.Tensor, slab: int | None = None) -> list[Pair]:
    """(sample, population-mean patches) for every sample of every volume of ``dataset`` (3D: one per volume;
    2D: one per slab, matched to the mean of the same slab position)."""
    out = []
    for i in range(len(dataset)):
        for k, item in enumerate(_items(dataset[i][0], slab)):
            out.append((item, target[k]))
    return out


@torch.no_grad()
def masked_loss_vs_mean(
    mae: MaskedAutoencoder, pairs: Sequence[Pair], seed: int, device: torch.device, batch_size: int = 16
) -> tuple[float, float]:
    """Mean masked-patch MSE of ``mae`` and of the population-mean predictor over ``pairs``, under the same masks.

    Masks are drawn after seeding torch's RNG with ``seed`` (its state is restored afterwards), so every call with
    the same seed scores the same masked patches. Returns (mae_loss, baseline_loss), each averaged over samples.
    """
    was_training = mae.training
    mae.eval()
    sums = np.zeros(2)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for batch in _batches(pairs, batch_size):
            x = torch.stack([p[0] for p in batch]).to(device)
            guess = torch.stack([p[1] for p in batch]).to(device)
            loss, _, mask = mae(x)
            baseline = masked_mse(mae.patchify(x), guess, mask, mae.norm_pix_loss)
            sums += np.array([float(loss), float(baseline)]) * len(batch)
    mae.train(was_training)
    return float(sums[0] / len(pairs)), float(sums[1] / len(pairs))


def _batches(items: Sequence[Pair], size: int) -> Iterable[Sequence[Pair]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
