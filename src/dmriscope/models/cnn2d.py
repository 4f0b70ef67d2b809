"""The 2D CNN: one shared ResNet18 over 3-slice sagittal slabs, their features joined by one linear layer.

The volume (B, 1, S, H, W) is cut into S/3 non-overlapping slabs of 3 consecutive sagittal slices; slab j holds
slices 3j, 3j+1, 3j+2 as its 3 input channels. Every slab goes through the same ResNet18 (ImageNet topology:
7x7/2 conv, 3x3/2 max-pool, 2 basic blocks per stage at 64-128-256-512 channels, stride 2 and a 1x1 conv + batch
norm shortcut at stages 2-4, global average pool) as one batch of B*S/3 images; the S/3 feature vectors are
concatenated in slab order and a single linear layer gives ONE logit (K = 1, P(positive) = sigmoid).

The backbone is MONAI's ``ResNet`` (2D, basic blocks [2, 2, 2, 2], 7x7/2 first conv, shortcut type B without bias,
no fully connected layer), which is torchvision's resnet18 without its ``fc``.

``width`` scales every channel count by width/64. The paper's counts hold at width 64 (grid 180x224x224):
backbone 11,176,512, head 60*512+1 = 30,721, total 11,207,233.
"""

from __future__ import annotations

import logging

import torch
from monai.networks.nets.resnet import ResNet
from torch import nn

from dmriscope.models.registry import register

log = logging.getLogger(__name__)

SLAB = 3  # sagittal slices per slab = input channels of the 2D backbone


def check_hparams(width: int, dropout: float) -> None:
    """``ValueError`` unless width is a positive int and 0 <= dropout < 1."""
    if isinstance(width, bool) or not isinstance(width, int) or width < 1:
        raise ValueError(f"width must be a positive integer, got {width!r}")
    if not 0.0 <= float(dropout) < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")


def resnet18_2d(width: int = 64, in_channels: int = SLAB) -> ResNet:
    """ResNet18 feature extractor, (N, in_channels, H, W) -> (N, 8 * width); width 64 = ImageNet's."""
    return ResNet(
        block="basic",
        layers=[2, 2, 2, 2],
        block_inplanes=[64, 128, 256, 512],
        spatial_dims=2,
        n_input_channels=in_channels,
        conv1_t_size=7,
        conv1_t_stride=2,
        shortcut_type="B",
        bias_downsample=False,
        widen_factor=width / 64,
        feed_forward=False,
    )


class SlabResNet2d(nn.Module):
    """Shared 2D ResNet18 over the S/3 sagittal slabs + one linear layer on their concatenated features.

    Args:
        grid: input grid (S, H, W) in voxels; S must be divisible by 3 (it fixes the head's input size).
        width: channels of the first stage (64 = the paper); all stages scale with it.
        dropout: dropout probability on the concatenated features, before the linear head.
    """

    def __init__(self, grid: tuple[int, int, int], width: int = 64, dropout: float = 0.0) -> None:
        super().__init__()
        check_hparams(width, dropout)
        if grid[0] % SLAB:
            raise ValueError(f"cnn2d: {grid[0]} sagittal slices are not divisible by {SLAB} (3-slice slabs)")
        self.grid = tuple(grid)
        self.n_slabs = grid[0] // SLAB
        self.backbone = resnet18_2d(width)
        self.features = 8 * width  # channels after the last stage (512 at width 64)
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(self.n_slabs * self.features, 1))

    def slab_features(self, x: torch.Tensor) -> torch.Tensor:
        """Backbone features of every slab: (B, 1, S, H, W) -> (B, S/3, 8 * width)."""
        if x.ndim != 5 or x.shape[1] != 1 or x.shape[2] != self.grid[0]:
            raise ValueError(f"cnn2d expects input (B, 1, {self.grid[0]}, H, W), got {tuple(x.shape)}")
        b, _, _, h, w = x.shape
        slabs = x.reshape(b * self.n_slabs, SLAB, h, w)  # slab j of subject i -> image i * S/3 + j
        return self.backbone(slabs).reshape(b, self.n_slabs, self.features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (B, 1) for input (B, 1, S, H, W)."""
        return self.head(self.slab_features(x).flatten(1))


@register("cnn2d")
def build_cnn2d(grid: tuple[int, int, int], width: int = 64, dropout: float = 0.0) -> SlabResNet2d:
    """Factory for the registry: see :class:`SlabResNet2d`."""
    return SlabResNet2d(grid, width=width, dropout=dropout)
