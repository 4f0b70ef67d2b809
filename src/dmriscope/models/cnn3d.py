"""The 3D CNN: a MedicalNet-style ResNet-10 with dilated last stages and group normalisation.

Topology (Chen et al. 2019, "Med3D"; github.com/Tencent/MedicalNet ``resnet10``, shortcut type B):
7x7x7 conv stride 2 (64 channels, no bias), norm, ReLU, 3x3x3 max-pool stride 2, then four stages of one basic
block each - 64 channels; 128 with stride 2; 256 with dilation 2; 512 with dilation 4 (stride 1 in both dilated
stages, as in MedicalNet, so they keep the 1/8 resolution) - with a 1x1x1 convolution (no bias) + norm shortcut where
the width changes, global average pool, and a linear layer 512 -> 2 (K = 2, P(positive) = softmax column 1).

Written by hand because MONAI 1.6.1's ``ResNet`` has neither dilation nor stride-1 late stages, and passes its
``norm`` only to the stem. Its parameter count at width 64 equals MONAI's ``resnet10(shortcut_type="B",
bias_downsample=False)`` backbone (dilation adds no parameters; GroupNorm has BatchNorm's affine count).

Normalisation: ``nn.GroupNorm`` with gcd(groups, channels) groups, groups = 32 by default (Wu & He 2018), i.e. 32
groups at every layer at width 64; at width 16 the 16-channel layers get 16 groups of one channel each.
Group norm does not depend on the batch, which suits the small 3D batches this model trains with.

``width`` scales every channel count by width/64. The paper's counts hold at width 64 (any grid):
backbone 14,355,520, head 1,026, total 14,356,546.
"""

from __future__ import annotations

import logging
import math

import torch
from torch import nn

from dmriscope.models.cnn2d import check_hparams
from dmriscope.models.registry import register

log = logging.getLogger(__name__)

# (channels at width 64, stride, dilation) of the four stages, as in MedicalNet's resnet10
STAGES = ((64, 1, 1), (128, 2, 1), (256, 1, 2), (512, 1, 4))


def group_norm(channels: int, groups: int) -> nn.GroupNorm:
    """GroupNorm over ``channels`` with gcd(groups, channels) groups (always a divisor of channels)."""
    return nn.GroupNorm(math.gcd(groups, channels), channels)


class BasicBlock3d(nn.Module):
    """Two 3x3x3 convolutions (both with ``dilation``; the first with ``stride``) + the residual shortcut.

    The shortcut is the identity, or a 1x1x1 convolution (no bias) + group norm when the stride or width changes.
    """

    def __init__(self, in_ch: int, out_ch: int, stride: int = 1, dilation: int = 1, groups: int = 32) -> None:
        super().__init__()
        self.conv1 = nn.Conv3d(in_ch, out_ch, 3, stride=stride, padding=dilation, dilation=dilation, bias=False)
        self.norm1 = group_norm(out_ch, groups)
        self.conv2 = nn.Conv3d(out_ch, out_ch, 3, padding=dilation, dilation=dilation, bias=False)
        self.norm2 = group_norm(out_ch, groups)
        self.act = nn.ReLU(inplace=True)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_ch != out_ch:
            self.shortcut = nn.Sequential(
                nn.Conv3d(in_ch, out_ch, 1, stride=stride, bias=False), group_norm(out_ch, groups)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, in_ch, D, H, W) -> (B, out_ch, D', H', W'), D' = ceil(D / stride)."""
        out = self.act(self.norm1(self.conv1(x)))
        out = self.norm2(self.conv2(out))
        return self.act(out + self.shortcut(x))


class ResNet10Backbone3d(nn.Module):
    """Feature extractor (B, 1, S, H, W) -> (B, 8 * width); output resolution before pooling is 1/8 per axis."""

    def __init__(self, width: int = 64, groups: int = 32) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv3d(1, width, 7, stride=2, padding=3, bias=False),
            group_norm(width, groups),
            nn.ReLU(inplace=True),
            nn.MaxPool3d(3, stride=2, padding=1),
        )
        in_ch = width
        for index, (channels, stride, dilation) in enumerate(STAGES, start=1):
            out_ch = channels * width // 64
            self.add_module(f"layer{index}", BasicBlock3d(in_ch, out_ch, stride, dilation, groups))
            in_ch = out_ch
        self.pool = nn.AdaptiveAvgPool3d(1)
        self.out_channels = in_ch
        for module in self.modules():
            if isinstance(module, nn.Conv3d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.pool(x).flatten(1)


class ResNet10Classifier3d(nn.Module):
    """3D ResNet-10 backbone + dropout + linear layer to 2 logits.

    Args:
        grid: input grid (S, H, W) in voxels; any size (global pooling); kept for the registry contract.
        width: channels of the first stage (64 = the paper); all stages scale with it.
        dropout: dropout probability on the pooled features, before the linear head.
        groups: GroupNorm groups (gcd(groups, channels) per layer).
    """

    def __init__(self, grid: tuple[int, int, int], width: int = 64, dropout: float = 0.0, groups: int = 32) -> None:
        super().__init__()
        check_hparams(width, dropout)
        if isinstance(groups, bool) or not isinstance(groups, int) or groups < 1:
            raise ValueError(f"groups must be a positive integer, got {groups!r}")
        self.grid = tuple(grid)
        self.backbone = ResNet10Backbone3d(width, groups)
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(self.backbone.out_channels, 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (B, 2) for input (B, 1, S, H, W)."""
        if x.ndim != 5 or x.shape[1] != 1:
            raise ValueError(f"cnn3d expects input (B, 1, S, H, W), got {tuple(x.shape)}")
        return self.head(self.backbone(x))


@register("cnn3d")
def build_cnn3d(
    grid: tuple[int, int, int], width: int = 64, dropout: float = 0.0, groups: int = 32
) -> ResNet10Classifier3d:
    """Factory for the registry: see :class:`ResNet10Classifier3d`."""
    return ResNet10Classifier3d(grid, width=width, dropout=dropout, groups=groups)
