"""The MAE's validation score: its masked-patch loss against the population mean, under the same seeded masks."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dmriscope.models.mae import MaskedAutoencoder, normalise_patches, patchify
from dmriscope.models.vit import ViTEncoder
from dmriscope.pretrain_eval import masked_loss_vs_mean, mean_target, pairs, population_mean
from dmriscope.render.pretraining import pretraining_rows

GRID, PATCH = (6, 8, 8), (3, 4, 4)


class Volumes(torch.utils.data.Dataset):
    def __init__(self, x: torch.Tensor) -> None:
        self.x = x

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int):
        return self.x[i], torch.tensor(0.0)


def mae() -> MaskedAutoencoder:
    torch.manual_seed(0)
    encoder = ViTEncoder(1, GRID, PATCH, dim=16, depth=1, heads=2, mlp_dim=32)
    return MaskedAutoencoder(encoder, decoder_dim=12, decoder_depth=1, decoder_heads=2)


def test_population_mean_targets_and_pairs():
    x = torch.randn(5, 1, *GRID)
    torch.testing.assert_close(population_mean(Volumes(x)), x.mean(0), rtol=0, atol=1e-6)
    target = mean_target(Volumes(x), PATCH, norm_pix=False)
    torch.testing.assert_close(target, patchify(x.mean(0)[None], PATCH), rtol=0, atol=1e-6)  # patchify is linear
    normed = mean_target(Volumes(x), PATCH, norm_pix=True)  # the mean of normalised patches, not the reverse
    torch.testing.assert_close(normed[0], normalise_patches(patchify(x, PATCH)).mean(0), rtol=0, atol=1e-5)
    volume_pairs = pairs(Volumes(x), target)
    assert len(volume_pairs) == 5 and torch.equal(volume_pairs[2][0], x[2]) and volume_pairs[2][1] is not None
    slabs = mean_target(Volumes(x), PATCH[1:], norm_pix=False, slab=3)
    assert slabs.shape == (2, 4, 3 * 16)  # 2 slab positions x 4 patches of 3 x 4 x 4 voxels
    slab_pairs = pairs(Volumes(x), slabs, slab=3)
    assert len(slab_pairs) == 10 and slab_pairs[3][0].shape == (3, 8, 8)
    torch.testing.assert_close(slab_pairs[3][0], x[1, 0, 3:6])
    torch.testing.assert_close(slab_pairs[3][1], slabs[1])
    torch.testing.assert_close(slabs[1], patchify(x[:, 0, 3:6], PATCH[1:]).mean(0), rtol=0, atol=1e-6)


def test_baseline_is_the_mean_image_scored_on_the_same_masks():
    model = mae()
    x = torch.randn(4, 1, *GRID)
    mean = x.mean(0)
    before = torch.get_rng_state()
    scored = pairs(Volumes(x), mean_target(Volumes(x), PATCH, norm_pix=False))
    loss, baseline = masked_loss_vs_mean(model, scored, seed=7, device=torch.device("cpu"))
    assert torch.equal(torch.get_rng_state(), before)  # the training RNG stream is untouched
    torch.manual_seed(7)
    noise = torch.rand(4, model.encoder.n_patches)  # the masks random_masking draws first
    keep = round(model.encoder.n_patches * 0.25)
    masked = torch.ones_like(noise)
    masked.scatter_(1, torch.argsort(noise, dim=1)[:, :keep], 0.0)
    err = ((patchify(x, PATCH) - patchify(mean[None], PATCH)) ** 2).mean(-1)
    assert baseline == pytest.approx(float((err * masked).sum() / masked.sum()), rel=1e-5)
    again = masked_loss_vs_mean(model, scored, seed=7, device=torch.device("cpu"))
    assert again == (loss, baseline)
    assert np.isfinite(loss) and loss > 0


def test_pretraining_rows_reads_start_and_end():
    history = [
        {"epoch": 0, "loss": None, "val_loss": 1.2, "val_baseline": 1.0, "val_ratio": 1.2},
        {"epoch": 1, "loss": 0.9, "val_loss": 0.8, "val_baseline": 1.0, "val_ratio": 0.8},
        {"epoch": 2, "loss": 0.7, "val_loss": 0.6, "val_baseline": 1.0, "val_ratio": 0.6},
    ]
    row = pretraining_rows(history, "FA", "3D volumes")
    assert row["val_ratio"] == 0.6 and row["val_ratio_start"] == 1.2 and row["epochs"] == 2
    assert pretraining_rows(history[1:], "FA", "2D")["val_ratio_start"] is None
