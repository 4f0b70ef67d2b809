"""Figures of the MAE pretraining: the loss curve and original / masked / reconstructed sagittal slices."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence

import numpy as np
import torch
from matplotlib.figure import Figure

from dmriscope.io import atomic_path
from dmriscope.models.mae import MaskedAutoencoder, masked_mse

log = logging.getLogger(__name__)


def plot_loss(history: Sequence[dict[str, float]], path: str | os.PathLike, title: str) -> None:
    """Masked-patch MSE per epoch (normalised units), written as PNG: training loss and, where the history has them,
    the validation loss and the population-mean predictor's validation loss (the baseline to beat)."""
    fig = Figure(figsize=(4.8, 3.4), dpi=120)
    ax = fig.add_subplot()
    trained = [r for r in history if r.get("loss") is not None]
    ax.plot([r["epoch"] for r in trained], [r["loss"] for r in trained], marker="o", ms=3, label="training")
    val = [r for r in history if r.get("val_loss") is not None]
    if val:
        epochs = [r["epoch"] for r in val]
        ax.plot(epochs, [r["val_loss"] for r in val], marker="s", ms=3, label="validation")
        ax.plot(epochs, [r["val_baseline"] for r in val], ls="--", c="0.4", label="validation, population mean")
        title = f"{title}\nvalidation loss / baseline: {val[-1]['val_ratio']:.2f} (last epoch)"
    ax.set(xlabel="epoch", ylabel="masked-patch MSE", title=title)
    ax.title.set_fontsize(9)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")


@torch.no_grad()
def reconstruct(
    mae: MaskedAutoencoder, volume: torch.Tensor, mean: torch.Tensor, seed: int, device: torch.device
) -> tuple[dict[str, np.ndarray], float, float]:
    """One seeded masking + reconstruction of a volume (1, S, H, W), beside the population-mean predictor.

    Returns volumes (S, H, W) keyed original, masked (NaN in masked patches), reconstructed (visible patches kept,
    masked ones predicted; un-normalised per patch when the MAE uses norm_pix_loss) and population mean (visible
    patches kept, masked ones the mean ``mean`` (1, S, H, W)); the masked-patch MSE of the MAE and of the mean.
    """
    mae.eval()
    torch.manual_seed(seed)
    x = volume[None].to(device)
    _, pred, mask = mae(x)
    target = mae.patchify(x).float()
    guess = mae.patchify(mean[None].to(device)).float()
    pred = pred.float()
    if mae.norm_pix_loss:
        mu, var = target.mean(-1, keepdim=True), target.var(-1, keepdim=True)
        pred = pred * (var + 1.0e-6) ** 0.5 + mu
    m = mask[:, :, None]
    shown = float(masked_mse(target, pred, mask))  # in the units shown (for norm_pix: per-patch un-normalised)
    baseline = float(masked_mse(target, guess, mask))
    recon = mae.unpatchify(pred * m + target * (1 - m))[0, 0].cpu().numpy()
    mean_fill = mae.unpatchify(guess * m + target * (1 - m))[0, 0].cpu().numpy()
    mask_vol = mae.unpatchify(m.expand_as(target))[0, 0].cpu().numpy() > 0.5
    original = x[0, 0].float().cpu().numpy()
    volumes = {
        "original": original,
        "masked": np.where(mask_vol, np.nan, original),
        "MAE": recon,
        "population mean": mean_fill,
    }
    return volumes, shown, baseline


def plot_reconstruction(
    mae: MaskedAutoencoder,
    volume: torch.Tensor,
    mean: torch.Tensor,
    label: str,
    path: str | os.PathLike,
    seed: int = 0,
    device: torch.device | None = None,
) -> None:
    """Original / masked / MAE-reconstructed / population-mean-filled sagittal slices (rows: slices at 1/4, 1/2,
    3/4 of S) as PNG, with both masked-patch MSEs in the title."""
    volumes, loss, baseline = reconstruct(mae, volume, mean, seed, device or torch.device("cpu"))
    original = volumes["original"]
    n_slices = original.shape[0]
    slices = sorted({min(n_slices - 1, round(n_slices * f)) for f in (0.25, 0.5, 0.75)})
    lo, hi = np.nanpercentile(original, [1, 99])
    fig = Figure(figsize=(9.6, 2.4 * len(slices)), dpi=120)
    axes = fig.subplots(len(slices), len(volumes), squeeze=False)
    for row, k in enumerate(slices):
        for col, (name, vol) in enumerate(volumes.items()):
            ax = axes[row, col]
            ax.set_facecolor("0.6")  # masked patches (NaN) show as grey
            ax.imshow(vol[k].T, origin="lower", cmap="gray", vmin=lo, vmax=hi, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(f"{name}, slice {k}" if col else f"{name}, sagittal slice {k}", fontsize=8)
    fig.suptitle(
        f"3D MAE, {label}: masked-patch MSE {loss:.4f}, population mean {baseline:.4f} "
        f"(ratio {loss / baseline if baseline > 0 else float('nan'):.2f}; normalised units)",
        fontsize=9,
    )
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    log.info("wrote %s", path)
