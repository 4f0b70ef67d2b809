"""Region occlusion: batching equals the one-region loop and Captum; a one-region model flags only its region."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from dmriscope.io import InputError
from dmriscope.models import build_model, positive_probability
from dmriscope.normalise import Normaliser
from dmriscope.occlusion import (
    DELTA_P_COLUMNS,
    occlude_batch,
    occlude_captum,
    occlude_dataset,
    occlude_model_files,
    occlude_one_at_a_time,
)
from dmriscope.occlusion_slabs import is_slab_model, touched_slabs
from dmriscope.regions import atlas_regions, mean_wm_value
from dmriscope.stats import region_statistics, significant_regions

GRID = (6, 8, 8)


def block_atlas(grid: tuple[int, int, int] = GRID) -> np.ndarray:
    """Eight 3 x 4 x 4 blocks labelled 1..8 with a one-voxel background border on the last axis removed."""
    atlas = np.zeros(grid, dtype=np.int16)
    label = 1
    for s in (slice(0, 3), slice(3, 6)):
        for h in (slice(0, 4), slice(4, 8)):
            for w in (slice(0, 4), slice(4, 8)):
                atlas[s, h, w] = label
                label += 1
    atlas[:, :, 0] = 0  # some background
    atlas[atlas == 8] = 0  # region 8 absent from the grid
    return atlas


class RegionMeanModel(nn.Module):
    """Logit = w * (mean of x over region k) + b: reads region k and nothing else. Output (B, 1)."""

    def __init__(self, atlas: np.ndarray, region: int, weight: float = 4.0) -> None:
        super().__init__()
        self.register_buffer("mask", torch.as_tensor(atlas == region))
        self.linear = nn.Linear(1, 1)
        with torch.no_grad():
            self.linear.weight.fill_(weight)
            self.linear.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x[:, 0][:, self.mask].mean(dim=1, keepdim=True))


class TinyConv(nn.Module):
    """A small random 3D CNN with two logits (class 1 = male)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.features = nn.Sequential(nn.Conv3d(1, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool3d(2))
        self.head = nn.Linear(32, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).flatten(1)) * 5.0


def cohort(n: int, region: int, effect: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """n subjects (n, 1, *GRID) of unit noise; males get +effect, females -effect in `region` (0 = no signal)."""
    rng = np.random.default_rng(seed)
    atlas = block_atlas()
    labels = rng.permutation(np.arange(n) % 2)
    x = rng.normal(size=(n, 1) + GRID).astype(np.float32)
    x[:, 0] *= atlas > 0  # zero outside the "brain"
    sign = np.where(labels == 1, 1.0, -1.0)[:, None, None, None]
    x[:, 0] += (effect * sign * (atlas == region)).astype(np.float32)
    return torch.from_numpy(x), torch.from_numpy(labels)


def test_mean_wm_value_is_the_mean_over_the_mask() -> None:
    x, _ = cohort(3, 2, 1.0, seed=1)
    wm = torch.as_tensor(block_atlas() > 0)
    expected = [x[i, 0].numpy()[wm.numpy()].mean() for i in range(3)]
    np.testing.assert_allclose(mean_wm_value(x, wm).numpy(), expected, rtol=1e-5)


@pytest.mark.parametrize("batch_size", [1, 5, 64])
def test_batched_equals_loop_and_captum(batch_size: int) -> None:
    atlas_np = block_atlas()
    atlas, wm = torch.as_tensor(atlas_np, dtype=torch.int64), torch.as_tensor(atlas_np > 0)
    x, labels = cohort(4, 3, 0.5, seed=2)
    model = TinyConv()
    regions = atlas_regions(atlas_np)
    assert regions == [1, 2, 3, 4, 5, 6, 7]
    batched = occlude_batch(model, x, labels, atlas, wm, positive_probability, batch_size=batch_size)
    loop = occlude_one_at_a_time(model, x, labels, atlas, wm, positive_probability, regions)
    captum = occlude_captum(model, x, labels, atlas, wm, positive_probability, regions)
    assert batched.regions == regions
    assert np.abs(loop.delta_p).max() > 1e-3  # the comparison is not between zeros
    np.testing.assert_allclose(batched.p_before, loop.p_before, atol=1e-6)
    np.testing.assert_allclose(batched.p_after, loop.p_after, atol=1e-5)
    np.testing.assert_allclose(batched.delta_p, captum.delta_p, atol=1e-5)


@pytest.mark.parametrize("batch_size", [1, 7])
def test_cnn2d_slab_shortcut_equals_full_forward_and_captum(batch_size: int) -> None:
    """cnn2d recomputes only the slabs a region touches; the result must equal occluding whole volumes."""
    grid = (9, 32, 32)  # 3 slabs; regions spanning one, two and three slabs
    atlas_np = np.zeros(grid, dtype=np.int16)
    atlas_np[0:2, 4:12, 4:12] = 1  # slab 0 only
    atlas_np[2:5, 14:22, 4:12] = 2  # slabs 0 and 1
    atlas_np[1:9, 24:30, 20:28] = 3  # all three
    atlas_np[6:9, 4:12, 20:28] = 4  # slab 2 only
    atlas, wm = torch.as_tensor(atlas_np, dtype=torch.int64), torch.as_tensor(atlas_np > 0)
    torch.manual_seed(0)
    model = build_model("cnn2d", grid, width=8).eval()
    for module in model.modules():  # non-trivial running statistics, so eval-mode batch norm matters
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.uniform_(-0.2, 0.2)
            module.running_var.uniform_(0.5, 2.0)
    with torch.no_grad():
        model.head[1].weight.mul_(50.0)  # probabilities away from 0.5
    x = torch.randn(3, 1, *grid)
    labels = torch.tensor([1, 0, 1])
    assert is_slab_model(model)
    fast = occlude_batch(model, x, labels, atlas, wm, positive_probability, batch_size=batch_size)
    loop = occlude_one_at_a_time(model, x, labels, atlas, wm, positive_probability, [1, 2, 3, 4])
    captum = occlude_captum(model, x, labels, atlas, wm, positive_probability, [1, 2, 3, 4])
    assert np.abs(loop.delta_p).max() > 1e-3
    np.testing.assert_allclose(fast.p_after, loop.p_after, atol=1e-5)
    np.testing.assert_allclose(fast.delta_p, captum.delta_p, atol=1e-5)
    assert [t.tolist() for t in touched_slabs(atlas, [1, 2, 3, 4], 3)] == [[0], [0, 1], [0, 1, 2], [2]]


def test_delta_p_sign_follows_the_correct_class() -> None:
    atlas_np = block_atlas()
    atlas, wm = torch.as_tensor(atlas_np, dtype=torch.int64), torch.as_tensor(atlas_np > 0)
    x, labels = cohort(6, 3, 3.0, seed=3)
    res = occlude_batch(RegionMeanModel(atlas_np, 3), x, labels, atlas, wm, positive_probability)
    col = res.regions.index(3)
    assert np.all(res.delta_p[:, col] > 0)  # every subject's evidence sits in region 3
    others = np.delete(res.delta_p, col, axis=1)
    np.testing.assert_array_equal(others, 0.0)


def _delta_table(model: nn.Module, x: torch.Tensor, labels: torch.Tensor, batch: int) -> pd.DataFrame:
    atlas = block_atlas()
    names = {r: f"region {r}" for r in range(1, 9)}
    subjects = [f"s{i:02d}" for i in range(len(x))]
    batches = [(x[i : i + batch], labels[i : i + batch]) for i in range(0, len(x), batch)]
    return occlude_dataset(model, batches, subjects, atlas, atlas > 0, names, positive_probability, batch_size=8)


def test_one_region_model_flags_exactly_that_region() -> None:
    x, labels = cohort(20, 5, 1.0, seed=4)
    model = RegionMeanModel(block_atlas(), 5)
    table = _delta_table(model, x, labels, batch=7)
    assert list(table.columns) == list(DELTA_P_COLUMNS)
    assert len(table) == 20 * 7 and table["subject"].nunique() == 20
    np.testing.assert_allclose(table["delta_p"], table["p_before"] - table["p_after"])
    stats = region_statistics(table, block_atlas(), block_atlas() > 0)
    assert significant_regions(stats, "fdr") == [5]
    assert significant_regions(stats, "holm") == [5]


def test_model_without_signal_flags_nothing() -> None:
    x, labels = cohort(20, 5, 0.0, seed=5)  # labels unrelated to the input
    table = _delta_table(RegionMeanModel(block_atlas(), 5), x, labels, batch=20)
    stats = region_statistics(table, block_atlas(), block_atlas() > 0)
    assert significant_regions(stats, "fdr") == []


def test_grid_mismatch_is_an_input_error() -> None:
    atlas = torch.as_tensor(block_atlas(), dtype=torch.int64)
    x = torch.zeros(2, 1, 6, 8, 7)
    with pytest.raises(InputError, match="atlas grid"):
        occlude_batch(TinyConv(), x, torch.tensor([0, 1]), atlas, atlas > 0, positive_probability)


def test_occlude_model_files_end_to_end(tmp_path) -> None:
    """A real registry model in a best.pt, the tensor store and grid masks -> delta_p.tsv -> regions.tsv."""
    from dmriscope.models import build_model
    from dmriscope.stats import region_statistics_files

    grid = (6, 16, 16)
    atlas = np.zeros(grid, dtype=np.int16)
    atlas[1:5, 2:14, 2:8], atlas[1:5, 2:14, 8:14] = 3, 7
    brain = np.zeros(grid, bool)
    brain[:, 1:15, 1:15] = True
    torch.manual_seed(0)
    model = build_model("cnn3d", grid)
    info = {
        "model": "cnn3d",
        "registry_name": "cnn3d",
        "arch": {},
        "grid": list(grid),
        "normaliser": Normaliser(mean=1.0, std=2.0).state(),
    }
    torch.save({"state_dict": model.state_dict(), **info}, tmp_path / "best.pt")
    rng = np.random.default_rng(0)
    np.save(tmp_path / "FA.npy", rng.normal(1.0, 2.0, size=(5,) + grid).astype(np.float32))
    index = pd.DataFrame({"row": range(5), "subject": [f"s{i}" for i in range(5)],
                          "set": ["train", "train", "test", "test", "test"], "group": ["M", "F", "M", "F", "M"],
                          "age_bin": "22-25", "label": [1, 0, 1, 0, 1]})  # fmt: skip
    index.to_csv(tmp_path / "FA_index.tsv", sep="\t", index=False)
    for name, array in (("atlas", atlas), ("wm", atlas > 0), ("brain", brain)):
        np.save(tmp_path / f"{name}.npy", array)
    pd.DataFrame({"index": [3, 7], "name": ["three", "seven"]}).to_csv(tmp_path / "labels.tsv", sep="\t", index=False)
    paths = {k: str(tmp_path / f"{k}.npy") for k in ("atlas", "wm", "brain")}
    out = tmp_path / "cnn3d" / "FA" / "delta_p.tsv"
    frame = occlude_model_files(checkpoint=str(tmp_path / "best.pt"), tensor=str(tmp_path / "FA.npy"),
                                index=str(tmp_path / "FA_index.tsv"), brain_mask=paths["brain"], atlas=paths["atlas"],
                                wm_mask=paths["wm"], labels=str(tmp_path / "labels.tsv"), delta_p=str(out),
                                batch_size=3)  # fmt: skip
    written = pd.read_csv(out, sep="\t", dtype={"subject": str})
    assert list(written["subject"].unique()) == ["s2", "s3", "s4"] and sorted(written["region"].unique()) == [3, 7]
    assert set(written["name"]) == {"three", "seven"}
    np.testing.assert_allclose(written["delta_p"], frame["delta_p"], rtol=1e-4, atol=1e-7)
    regions = region_statistics_files(
        delta_p=str(out), atlas=paths["atlas"], wm_mask=paths["wm"], regions=str(out.with_name("regions.tsv"))
    )
    assert list(regions["region"]) == [3, 7] and (regions["n_subjects"] == 3).all()
