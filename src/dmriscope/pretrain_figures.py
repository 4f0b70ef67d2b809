"""Figures of the MAE pretraining: the loss curve and original / masked / reconstructed sagittal slices."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence

import numpy as np
import torch
from matplotlib.figure import Figure

from dmriscope.io import atomic_path
from dmriscope.models.mae import MaskedAutoencoder

log = logging.getLogger(__name__)


def plot_loss(history: Sequence[dict[str, float]], path: str | os.PathLike, title: str) -> None:
    """Training loss (masked-patch MSE, normalised units) per epoch, written as PNG."""
    fig = Figure(figsize=(4.5, 3.2), dpi=120)
    ax = fig.add_subplot()
    ax.plot([r["epoch"] for r in history], [r["loss"] for r in history], marker="o", ms=3)
    ax.set(xlabel="epoch", ylabel="masked-patch MSE", title=title)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")


@torch.no_grad()
def reconstruct(
    mae: MaskedAutoencoder, volume: torch.Tensor, seed: int, device: torch.device
) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """One seeded masking + reconstruction of a volume (1, S, H, W).

    Returns original, masked (NaN in masked patches) and reconstructed (visible patches kept, masked ones
    predicted; un-normalised per patch when the MAE uses norm_pix_loss) volumes (S, H, W), and the masked-patch MSE.
    """
    mae.eval()
    torch.manual_seed(seed)
    x = volume[None].to(device)
    loss, pred, mask = mae(x)
    target = mae.patchify(x).float()
    pred = pred.float()
    if mae.norm_pix_loss:
        mean, var = target.mean(-1, keepdim=True), target.var(-1, keepdim=True)
        pred = pred * (var + 1.0e-6) ** 0.5 + mean
    m = mask[:, :, None]
    recon = mae.unpatchify(pred * m + target * (1 - m))[0, 0].cpu().numpy()
    mask_vol = mae.unpatchify(m.expand_as(target))[0, 0].cpu().numpy() > 0.5
    original = x[0, 0].float().cpu().numpy()
    return original, np.where(mask_vol, np.nan, original), recon, float(loss)


def plot_reconstruction(
    mae: MaskedAutoencoder,
    volume: torch.Tensor,
    label: str,
    path: str | os.PathLike,
    seed: int = 0,
    device: torch.device | None = None,
) -> None:
    """Original / masked / reconstructed sagittal slices (rows: slices at 1/4, 1/2, 3/4 of S) as PNG."""
    original, masked, recon, loss = reconstruct(mae, volume, seed, device or torch.device("cpu"))
    n_slices = original.shape[0]
    slices = sorted({min(n_slices - 1, round(n_slices * f)) for f in (0.25, 0.5, 0.75)})
    lo, hi = np.nanpercentile(original, [1, 99])
    fig = Figure(figsize=(7.5, 2.4 * len(slices)), dpi=120)
    axes = fig.subplots(len(slices), 3, squeeze=False)
    for row, k in enumerate(slices):
        for col, (name, vol) in enumerate((("original", original), ("masked", masked), ("reconstructed", recon))):
            ax = axes[row, col]
            ax.set_facecolor("0.6")  # masked patches (NaN) show as grey
            ax.imshow(vol[k].T, origin="lower", cmap="gray", vmin=lo, vmax=hi, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(f"{name}, slice {k}" if col else f"{name}, sagittal slice {k}", fontsize=8)
    fig.suptitle(f"3D MAE, {label}: masked-patch MSE {loss:.4f} (normalised units)", fontsize=9)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    log.info("wrote %s", path)
