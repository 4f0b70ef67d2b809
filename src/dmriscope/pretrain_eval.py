"""How well a masked autoencoder predicts what it cannot see, against the population-mean predictor.

The baseline a MAE must beat is not 0 but the training population's mean image in the MAE's own input units
(`population_mean`): with voxel-wise normalisation that mean is ~0 everywhere, so "predict 0" is the baseline; with
global normalisation it is the mean anatomy, which already predicts most of a masked patch. A MAE whose masked-patch
loss equals the baseline's has learnt nothing about the subject in front of it; the ratio MAE / baseline (< 1 is
better) is written to the pretraining history for validation subjects, every epoch, with the same seeded masks.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from dmriscope.models.mae import MaskedAutoencoder, masked_mse

Pair = tuple[torch.Tensor, torch.Tensor]  # (input x (C, *img), population mean of the same shape)


def population_mean(dataset: Dataset) -> torch.Tensor:
    """Voxel-wise mean of the (normalised) volumes (1, S, H, W) of ``dataset`` (float64 sum, float32 result)."""
    total: np.ndarray | None = None
    for i in range(len(dataset)):
        x = dataset[i][0].numpy().astype(np.float64)
        total = x if total is None else total + x
    if total is None:
        raise ValueError("population_mean: empty dataset")
    return torch.from_numpy((total / len(dataset)).astype(np.float32))


def volume_pairs(dataset: Dataset, mean: torch.Tensor) -> list[Pair]:
    """(volume, mean volume) pairs, for the 3D MAE."""
    return [(dataset[i][0], mean) for i in range(len(dataset))]


def slab_pairs(dataset: Dataset, mean: torch.Tensor, slab: int) -> list[Pair]:
    """(slab, mean slab) pairs of every ``slab``-slice sagittal slab of every volume, for the 2D MAE (s channels)."""
    pairs = []
    for i in range(len(dataset)):
        volume = dataset[i][0][0]
        for k in range(volume.shape[0] // slab):
            part = slice(k * slab, (k + 1) * slab)
            pairs.append((volume[part], mean[0, part]))
    return pairs


def normalise_patches(patches: torch.Tensor) -> torch.Tensor:
    """Each patch (last axis) to zero mean and unit variance, as MAE's norm_pix_loss does to its targets."""
    mean, var = patches.mean(dim=-1, keepdim=True), patches.var(dim=-1, keepdim=True)
    return (patches - mean) / (var + 1.0e-6) ** 0.5


@torch.no_grad()
def masked_loss_vs_mean(
    mae: MaskedAutoencoder, pairs: Sequence[Pair], seed: int, device: torch.device, batch_size: int = 16
) -> tuple[float, float]:
    """Mean masked-patch MSE of ``mae`` and of the population-mean predictor over ``pairs``, under the same masks.

    Masks are drawn from a generator seeded with ``seed`` (torch's global RNG is left as it was), so every call with
    the same seed scores the same masked patches. With norm_pix_loss the mean patch is normalised like the targets.
    Returns (mae_loss, baseline_loss), each averaged over samples.
    """
    was_training = mae.training
    mae.eval()
    sums = np.zeros(2)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for batch in _batches(pairs, batch_size):
            x = torch.stack([p[0] for p in batch]).to(device)
            mean = torch.stack([p[1] for p in batch]).to(device)
            loss, _, mask = mae(x)
            guess = mae.patchify(mean).float()
            if mae.norm_pix_loss:
                guess = normalise_patches(guess)
            baseline = masked_mse(mae.patchify(x), guess, mask, mae.norm_pix_loss)
            sums += np.array([float(loss), float(baseline)]) * len(batch)
    mae.train(was_training)
    return float(sums[0] / len(pairs)), float(sums[1] / len(pairs))


def _batches(items: Sequence[Pair], size: int) -> Iterable[Sequence[Pair]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
