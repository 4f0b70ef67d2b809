"""The CNN classifiers (cnn2d, cnn3d) and the model registry."""

from __future__ import annotations

import math

import pytest
import torch
from monai.networks.nets import resnet10
from torch import nn

from dmriscope.models import (
    PAPER_GRID,
    available_models,
    build_model,
    count_parameters,
    positive_probability,
    register,
    registry,
    table4_rows,
)

SMALL = (24, 32, 32)

# Table 4 of the paper / torchvision's resnet18 without fc (11,689,512 - 513,000) / MONAI's resnet10 backbone
PAPER_COUNTS = {
    "cnn2d": {"backbone": 11_176_512, "head": 30_721, "total": 11_207_233},
    "cnn3d": {"backbone": 14_355_520, "head": 1_026, "total": 14_356_546},
}


@pytest.fixture(autouse=True)
def _seed_and_one_thread():
    """Seeded; one thread: these tiny convolutions run faster on one, and far faster when the cores are shared."""
    torch.manual_seed(0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def meta_model(name: str, grid: tuple[int, int, int] = PAPER_GRID, **hparams) -> nn.Module:
    with torch.device("meta"):
        return build_model(name, grid, **hparams)


# --- counts (Table 4) ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["cnn2d", "cnn3d"])
def test_paper_counts(name: str) -> None:
    assert count_parameters(meta_model(name)) == PAPER_COUNTS[name]


def test_cnn3d_backbone_count_matches_monai_resnet10() -> None:
    with torch.device("meta"):
        monai_backbone = resnet10(
            spatial_dims=3, n_input_channels=1, shortcut_type="B", bias_downsample=False, feed_forward=False
        )
    ours = count_parameters(meta_model("cnn3d"))["backbone"]
    assert ours == sum(p.numel() for p in monai_backbone.parameters())


def test_table4_rows_include_both_cnns() -> None:
    rows = {row["model"]: row for row in table4_rows()}
    for name, counts in PAPER_COUNTS.items():
        assert rows[name] == {"model": name, **counts}


def test_cnn2d_backbone_is_one_shared_resnet() -> None:
    """The backbone's size does not depend on the number of slabs; only the head grows with it."""
    few, many = count_parameters(meta_model("cnn2d", (12, 224, 224))), count_parameters(meta_model("cnn2d"))
    assert few["backbone"] == many["backbone"]
    assert (many["head"] - 1) / (few["head"] - 1) == PAPER_GRID[0] / 12


def test_width_scales_channels() -> None:
    wide, narrow = meta_model("cnn3d", width=64), meta_model("cnn3d", width=16)
    assert wide.backbone.layer4.conv2.out_channels == 512
    assert narrow.backbone.layer4.conv2.out_channels == 128
    assert narrow.head[1].in_features == 128
    assert meta_model("cnn2d", SMALL, width=16).head[1].in_features == 8 * 128


# --- forward ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "k", "width"), [("cnn2d", 1, 8), ("cnn3d", 2, 8), ("cnn2d", 1, 64), ("cnn3d", 2, 64)])
def test_forward_shape(name: str, k: int, width: int) -> None:
    model = build_model(name, SMALL, width=width).eval()
    with torch.no_grad():
        logits = model(torch.randn(2, 1, *SMALL))
    assert logits.shape == (2, k)
    assert torch.isfinite(logits).all()
    assert positive_probability(logits).shape == (2,)


@pytest.mark.parametrize("name", ["cnn2d", "cnn3d"])
def test_every_parameter_gets_a_gradient(name: str) -> None:
    model = build_model(name, SMALL, width=8)
    model(torch.randn(2, 1, *SMALL)).sum().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert missing == []


def test_cnn2d_slab_j_is_slices_3j_to_3j_plus_2() -> None:
    model = build_model("cnn2d", SMALL, width=8).eval()
    x = torch.randn(2, 1, *SMALL)
    with torch.no_grad():
        features = model.slab_features(x)
        for j in (0, 3, 7):
            expected = model.backbone(x[:, 0, 3 * j : 3 * j + 3])
            torch.testing.assert_close(features[:, j], expected)


def test_cnn2d_swapping_two_slabs_acts_only_through_the_head() -> None:
    """Swap slabs 1 and 5 in the input and the matching weight blocks of the head: same logits (shared backbone)."""
    model = build_model("cnn2d", SMALL, width=8).eval()
    x = torch.randn(2, 1, *SMALL)
    slices = list(range(SMALL[0]))
    slices[3:6], slices[15:18] = slices[15:18], slices[3:6]
    x_swapped = x[:, :, slices]
    with torch.no_grad():
        before = model(x)
        changed = model(x_swapped)
        weight = model.head[1].weight.view(1, model.n_slabs, model.features)
        weight[:, [1, 5]] = weight[:, [5, 1]].clone()
        after = model(x_swapped)
    assert not torch.allclose(before, changed)  # the head does see slab order
    torch.testing.assert_close(after, before)


def test_cnn3d_last_stages_are_dilated_2_and_4() -> None:
    """A unit impulse through each 3x3x3 convolution of layer3/layer4 lands exactly at offsets {-d, 0, d}^3."""
    model = build_model("cnn3d", SMALL, width=8).eval()
    for layer, dilation in (("layer1", 1), ("layer3", 2), ("layer4", 4)):
        block = getattr(model.backbone, layer)
        for conv in (block.conv1, block.conv2):
            assert conv.stride == (1, 1, 1)
            impulse = torch.zeros(1, conv.in_channels, 13, 13, 13)
            impulse[0, :, 6, 6, 6] = 1.0
            with torch.no_grad():
                response = conv(impulse).abs().sum(dim=(0, 1))
            hit = {tuple(int(i) - 6 for i in idx) for idx in torch.nonzero(response)}
            offsets = (-dilation, 0, dilation)
            assert hit == {(a, b, c) for a in offsets for b in offsets for c in offsets}


def test_cnn3d_keeps_one_eighth_resolution_after_layer2() -> None:
    backbone = build_model("cnn3d", SMALL, width=8).backbone.eval()
    with torch.no_grad():
        x = backbone.layer2(backbone.layer1(backbone.stem(torch.randn(1, 1, *SMALL))))
        assert x.shape[2:] == (3, 4, 4)
        assert backbone.layer4(backbone.layer3(x)).shape[2:] == (3, 4, 4)


def test_cnn3d_uses_group_norm_with_gcd_groups() -> None:
    for width, first_groups in ((64, 32), (16, 16)):
        backbone = meta_model("cnn3d", width=width).backbone
        assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in backbone.modules())
        norms = [m for m in backbone.modules() if isinstance(m, nn.GroupNorm)]
        assert len(norms) == 1 + 2 * 4 + 3  # stem, two per block, three shortcuts
        assert all(m.num_groups == math.gcd(32, m.num_channels) for m in norms)
        assert backbone.stem[1].num_groups == first_groups


def test_dropout_sits_before_the_head_linear() -> None:
    for name in ("cnn2d", "cnn3d"):
        head = meta_model(name, SMALL, width=8, dropout=0.3).head
        assert isinstance(head[0], nn.Dropout) and head[0].p == 0.3
        assert isinstance(head[1], nn.Linear)


# --- positive_probability -----------------------------------------------------------------------------------------


def test_positive_probability_single_logit() -> None:
    logits = torch.tensor([[0.0], [math.log(3.0)], [-math.log(4.0)]])
    torch.testing.assert_close(positive_probability(logits), torch.tensor([0.5, 0.75, 0.2]))


def test_positive_probability_two_logits() -> None:
    logits = torch.tensor([[0.0, math.log(3.0)], [5.0, 5.0], [math.log(4.0), 0.0]])
    torch.testing.assert_close(positive_probability(logits), torch.tensor([0.75, 0.5, 0.2]))


def test_positive_probability_bf16_comes_back_float32() -> None:
    assert positive_probability(torch.zeros(3, 2, dtype=torch.bfloat16)).dtype == torch.float32


@pytest.mark.parametrize("shape", [(4,), (4, 3), (2, 1, 1)])
def test_positive_probability_rejects_other_shapes(shape: tuple[int, ...]) -> None:
    with pytest.raises(ValueError, match="logits"):
        positive_probability(torch.zeros(shape))


# --- registry and bad input ---------------------------------------------------------------------------------------


def test_unknown_model_lists_the_available_ones() -> None:
    with pytest.raises(ValueError, match="unknown model 'resnet50'") as info:
        build_model("resnet50", SMALL)
    for name in ("cnn2d", "cnn3d"):
        assert name in str(info.value)
    assert {"cnn2d", "cnn3d"} <= set(available_models())


@pytest.mark.parametrize(
    ("name", "grid", "hparams", "match"),
    [
        ("cnn2d", (25, 32, 32), {}, "not divisible by 3"),
        ("cnn2d", (24, 32), {}, "grid"),
        ("cnn3d", (24, 0, 32), {}, "grid"),
        ("cnn3d", (24.5, 32, 32), {}, "grid"),
        ("cnn2d", SMALL, {"width": 0}, "width"),
        ("cnn3d", SMALL, {"width": 16.0}, "width"),
        ("cnn3d", SMALL, {"dropout": 1.0}, "dropout"),
        ("cnn3d", SMALL, {"groups": 0}, "groups"),
    ],
)
def test_bad_arguments_raise_value_error(name: str, grid, hparams: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        build_model(name, grid, **hparams)


def test_unknown_hyper_parameter_is_rejected() -> None:
    with pytest.raises(TypeError, match="depth"):
        build_model("cnn3d", SMALL, depth=18)


def test_cnn2d_rejects_input_with_other_slice_count() -> None:
    model = build_model("cnn2d", SMALL, width=8)
    with pytest.raises(ValueError, match="24"):
        model(torch.zeros(1, 1, 27, 32, 32))


class _Toy(nn.Module):
    def __init__(self, grid: tuple[int, int, int]) -> None:
        super().__init__()
        self.backbone = nn.Flatten()
        self.head = nn.Linear(math.prod(grid), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x))


def test_registry_is_generic(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(registry, "_FACTORIES", dict(registry._FACTORIES))
    register("toy")(_Toy)
    model = build_model("toy", (3, 4, 5))
    assert "toy" in available_models()
    assert count_parameters(model) == {"backbone": 0, "head": 61, "total": 61}
    with pytest.raises(ValueError, match="already registered"):
        register("toy")(lambda grid: _Toy(grid))


def test_model_without_backbone_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(registry, "_FACTORIES", dict(registry._FACTORIES))
    register("headless")(lambda grid: nn.Linear(2, 1))
    with pytest.raises(TypeError, match="backbone"):
        build_model("headless", SMALL)
    with pytest.raises(TypeError, match="backbone"):
        count_parameters(nn.Linear(2, 1))


# --- learning: a planted signal is found, no signal gives chance -------------------------------------------------


def _blob_data(n: int, effect: float, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """(n, 1, 12, 16, 16) unit noise; class 1 (every second sample) gets +effect in a 6x6x6 block."""
    labels = torch.arange(n) % 2
    x = torch.randn(n, 1, 12, 16, 16, generator=gen)
    x[:, :, 3:9, 4:10, 4:10] += effect * labels.view(-1, 1, 1, 1, 1)
    return x, labels


def _held_out_accuracy(name: str, effect: float, steps: int = 40) -> float:
    gen = torch.Generator().manual_seed(1)
    x_train, y_train = _blob_data(64, effect, gen)
    x_test, y_test = _blob_data(64, effect, gen)
    model = build_model(name, (12, 16, 16), width=8)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(steps):
        batch = torch.randperm(64)[:16]
        logits = model(x_train[batch])
        if logits.shape[1] == 1:
            loss = nn.functional.binary_cross_entropy_with_logits(logits[:, 0], y_train[batch].float())
        else:
            loss = nn.functional.cross_entropy(logits, y_train[batch])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    with torch.no_grad():
        predicted = (positive_probability(model(x_test)) > 0.5).long()
    return (predicted == y_test).float().mean().item()


@pytest.mark.parametrize("name", ["cnn2d", "cnn3d"])
def test_learns_a_planted_signal_and_not_noise(name: str) -> None:
    assert _held_out_accuracy(name, effect=1.5) >= 0.9
    # 64 balanced test subjects: >= 45 correct by chance has p < 0.001
    assert _held_out_accuracy(name, effect=0.0) <= 0.7
