"""The 3D Vision Transformer, its 2D slab twin (for 2D MAE pretraining), and the 2D -> 3D weight transfer.

Architecture (paper: grid 180x224x224, patch 6x16x16 -> 30*14*14 = 5,880 patches, 5,881 tokens with the class
token):

- patch embedding: MONAI ``PatchEmbeddingBlock`` (a Conv3d with kernel = stride = patch, 1 -> D channels), patch
  tokens flattened in (slab, row, column) order, i.e. token index ``k * (H/h * W/w) + i * W/w + j``;
- a learnable class token and a learnable positional embedding for the class token (``cls_pos``) and every patch
  (``patch_embed.position_embeddings``);
- ``depth`` pre-norm transformer blocks ``x + attn(LN(x)); x + mlp(LN(x))`` built from MONAI's ``SABlock`` (qkv
  with bias, ``scaled_dot_product_attention``) and ``MLPBlock`` (GELU). MONAI's ``TransformerBlock`` is not used:
  it always creates an unused ``norm_cross_attn`` LayerNorm (+2*D parameters per block), which breaks the count;
- a final LayerNorm; the classifier head is a linear layer D -> 2 on the class token (or, with ``pool='mean'``, on
  the mean patch token; with ``pool='tokens'``, a linear layer N*D -> 2 on every patch token side by side, which
  keeps where in the volume a feature sits).

At the paper's size (D=384, depth 12, 6 heads, MLP 1,536): backbone 24,143,232, head 770, total 24,144,002.

The 2D twin (``spatial_dims=2``) reads a sagittal slab of ``s`` consecutive slices as ``s`` channels, so its Conv2d
weight (D, s, h, w) is exactly the Conv3d weight (D, 1, s, h, w) and every other weight has the same name and shape.
Its positional table covers the in-plane grid (H/h x W/w). The extension to the 3D grid (``extend_pos_embed``):

    pos3d[k, i, j] = pos2d[i, j] + sincos_1d(k)        k = slab index 0..S/s-1

the 2D in-plane table repeated along the slab axis plus a fixed 1D sin-cos code of the slab index (dimension D,
MAE's ``get_1d_sincos_pos_embed`` formula: sin(k w_m) for the first D/2 entries, cos(k w_m) for the rest,
w_m = 10000^(-m / (D/2))). The class token's positional embedding is copied unchanged. The 3D table stays learnable.
"""

from __future__ import annotations

import logging
import math
import os
import pickle
import warnings
from collections.abc import Sequence
from typing import Any

import torch
from monai.networks.blocks import MLPBlock, PatchEmbeddingBlock, SABlock
from monai.networks.blocks.pos_embed_utils import build_sincos_position_embedding
from torch import nn
from torch.utils.checkpoint import checkpoint

from dmriscope.io import InputError
from dmriscope.models.registry import register

log = logging.getLogger(__name__)

PAPER_VIT: dict[str, Any] = {"dim": 384, "depth": 12, "heads": 6, "mlp_dim": 1536, "patch": (6, 16, 16)}


class PreNormBlock(nn.Module):
    """Pre-norm transformer block on tokens (B, T, D): ``x + attn(LN(x))``, then ``x + mlp(LN(x))``.

    Attention is MONAI's ``SABlock`` with qkv bias and ``scaled_dot_product_attention`` (no T x T matrix is kept,
    so memory grows linearly with T); its dropout is 0 because SABlock's fused path applies it in eval mode too.
    ``dropout`` acts inside the MLP only.
    """

    def __init__(self, dim: int, heads: int, mlp_dim: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = SABlock(dim, heads, 0.0, qkv_bias=True, use_flash_attention=True)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = MLPBlock(dim, mlp_dim, dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


def run_blocks(blocks: nn.ModuleList, x: torch.Tensor, checkpointing: bool) -> torch.Tensor:
    """Apply ``blocks`` in order; with ``checkpointing`` (and grad on) each block's activations are recomputed."""
    use_ckpt = checkpointing and torch.is_grad_enabled() and x.requires_grad
    for block in blocks:
        x = checkpoint(block, x, use_reentrant=False) if use_ckpt else block(x)
    return x


def init_transformer_weights(module: nn.Module) -> None:
    """MAE's initialisation: Linear weights xavier-uniform with zero bias, LayerNorm weight 1 and bias 0."""
    if isinstance(module, nn.Linear):
        nn.init.xavier_uniform_(module.weight)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


def check_vit_hparams(
    img_size: Sequence[int], patch: Sequence[int], dim: int, depth: int, heads: int, mlp_dim: int, dropout: float
) -> None:
    """``ValueError`` unless sizes are positive, the grid is divisible by the patch and D by the heads."""
    if len(patch) != len(img_size):
        raise ValueError(f"vit: patch {tuple(patch)} and grid {tuple(img_size)} have different lengths")
    for size, p in zip(img_size, patch):
        if p < 1 or size % p:
            raise ValueError(f"vit: grid {tuple(img_size)} is not divisible by patch {tuple(patch)}")
    for name, value in (("dim", dim), ("depth", depth), ("heads", heads), ("mlp_dim", mlp_dim)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"vit: {name} must be a positive integer, got {value!r}")
    if dim % heads:
        raise ValueError(f"vit: dim {dim} is not divisible by heads {heads}")
    if not 0.0 <= float(dropout) < 1.0:
        raise ValueError(f"vit: dropout must be in [0, 1), got {dropout!r}")


class ViTEncoder(nn.Module):
    """ViT encoder: patch tokens + positions, class token, pre-norm blocks, final LayerNorm.

    Args:
        in_channels: input channels (1 for volumes; s for 2D slabs of s sagittal slices).
        img_size: spatial input size, (S, H, W) voxels in 3D or (H, W) in 2D; divisible by ``patch``.
        patch: patch size per spatial axis.
        dim, depth, heads, mlp_dim: token width D, number of blocks, attention heads, MLP hidden width.
        dropout: MLP dropout. checkpointing: recompute each block in backward (activation checkpointing).
        pos_init: "learnable" (truncated normal, std 0.02) or "sincos" (MAE's fixed sin-cos values, still learnable).
    """

    def __init__(
        self,
        in_channels: int,
        img_size: Sequence[int],
        patch: Sequence[int],
        dim: int = 384,
        depth: int = 12,
        heads: int = 6,
        mlp_dim: int = 1536,
        dropout: float = 0.0,
        checkpointing: bool = False,
        pos_init: str = "learnable",
    ) -> None:
        super().__init__()
        check_vit_hparams(img_size, patch, dim, depth, heads, mlp_dim, dropout)
        self.img_size, self.patch, self.dim = tuple(img_size), tuple(patch), dim
        self.grid_shape = tuple(s // p for s, p in zip(img_size, patch))  # patches per axis
        self.checkpointing = bool(checkpointing)
        self.patch_embed = PatchEmbeddingBlock(
            in_channels, self.img_size, self.patch, dim, heads, "conv", "learnable", 0.0, len(self.img_size)
        )
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.cls_pos = nn.Parameter(torch.zeros(1, 1, dim))
        self.blocks = nn.ModuleList(PreNormBlock(dim, heads, mlp_dim, dropout) for _ in range(depth))
        self.norm = nn.LayerNorm(dim)
        self.blocks.apply(init_transformer_weights)
        nn.init.normal_(self.cls_token, std=0.02)
        if pos_init == "sincos":
            with torch.no_grad():
                self.patch_embed.position_embeddings.copy_(sincos_table(self.grid_shape, dim))
        elif pos_init != "learnable":
            raise ValueError(f"vit: pos_init must be 'learnable' or 'sincos', got {pos_init!r}")

    @property
    def n_patches(self) -> int:
        return math.prod(self.grid_shape)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Patch tokens with their positional embedding: (B, C, *img_size) -> (B, N, D)."""
        return self.patch_embed(x)

    def encode_tokens(self, tokens: torch.Tensor) -> torch.Tensor:
        """Prepend the class token (+ its position), run the blocks and the final norm: (B, T, D) -> (B, 1+T, D)."""
        cls = (self.cls_token + self.cls_pos).expand(tokens.shape[0], -1, -1)
        x = run_blocks(self.blocks, torch.cat([cls, tokens], dim=1), self.checkpointing and self.training)
        return self.norm(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class-token features: (B, C, *img_size) -> (B, D)."""
        return self.encode_tokens(self.embed(x))[:, 0]


POOLS = ("cls", "mean", "tokens")


class ViTClassifier(nn.Module):
    """3D ViT classifier: ``backbone`` (ViTEncoder on (B, 1, S, H, W)) and ``head`` (linear D -> n_classes).

    Args:
        grid: input grid (S, H, W). n_classes: head outputs.
        pool: the features the head reads: "cls" (the class token, the paper's), "mean" (the mean of the patch
            tokens, as MAE's fine-tuning reads them; the MAE never trains the class token's output) or "tokens"
            (all N patch tokens concatenated, N*D features: a read-out that can weigh one region's patches, which a
            mean over the volume's patches dilutes; meant for the linear probe at small grids, N*D = 5,184 at the
            default 36x48x48 with D = 96, but 2.3 M at the paper's 5,880 patches).
        head_norm: a BatchNorm without affine parameters before the linear head (MAE's linear-probing recipe; the
            frozen features are standardised, so the head trains at one learning rate whatever their scale). It
            adds no parameter; `dmriscope.linear_probe` sets its statistics to the training features'.
        encoder_kwargs: the ViTEncoder's.
    """

    def __init__(
        self, grid: Sequence[int], n_classes: int = 2, pool: str = "cls", head_norm: bool = False, **encoder_kwargs: Any
    ) -> None:
        super().__init__()
        if pool not in POOLS:
            raise ValueError(f"vit: pool must be one of {', '.join(POOLS)}, got {pool!r}")
        self.grid, self.pool = tuple(grid), pool
        self.backbone = ViTEncoder(1, self.grid, **encoder_kwargs)
        n_features = self.backbone.dim * (self.backbone.n_patches if pool == "tokens" else 1)
        linear = nn.Linear(n_features, n_classes)
        init_transformer_weights(linear)
        if head_norm:
            norm = nn.BatchNorm1d(n_features, affine=False, eps=1.0e-6)
            self.head: nn.Module = nn.Sequential(norm, linear)
        else:
            self.head = linear

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The features the head reads: class token or mean patch token (B, D), or all patch tokens (B, N*D)."""
        if x.ndim != 5 or x.shape[1] != 1 or tuple(x.shape[2:]) != self.grid:
            raise ValueError(f"vit expects input (B, 1, {', '.join(map(str, self.grid))}), got {tuple(x.shape)}")
        tokens = self.backbone.encode_tokens(self.backbone.embed(x))
        if self.pool == "cls":
            return tokens[:, 0]
        return tokens[:, 1:].mean(dim=1) if self.pool == "mean" else tokens[:, 1:].flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (B, n_classes) from volumes (B, 1, S, H, W), sagittal slices first."""
        return self.head(self.features(x))


@register("vit")
def build_vit(
    grid: tuple[int, int, int],
    dim: int = 384,
    depth: int = 12,
    heads: int = 6,
    mlp_dim: int = 1536,
    patch: Sequence[int] = (6, 16, 16),
    dropout: float = 0.0,
    checkpointing: bool = False,
    pool: str = "cls",
    head_norm: bool = False,
) -> ViTClassifier:
    """The 3D ViT classifier for input grid (S, H, W); defaults are the paper's (24,144,002 parameters)."""
    return ViTClassifier(
        grid,
        pool=pool,
        head_norm=head_norm,
        dim=dim,
        depth=depth,
        heads=heads,
        mlp_dim=mlp_dim,
        patch=tuple(patch),
        dropout=dropout,
        checkpointing=checkpointing,
    )


def build_slab_encoder(grid: Sequence[int], patch: Sequence[int] = (6, 16, 16), **hparams: Any) -> ViTEncoder:
    """The 2D twin of the 3D encoder: slabs (B, s, H, W) of s = patch[0] sagittal slices, sin-cos initialised."""
    if len(grid) != 3 or len(patch) != 3:
        raise ValueError(f"vit: grid {tuple(grid)} and patch {tuple(patch)} must both have 3 entries")
    if grid[0] % patch[0]:
        raise ValueError(f"vit: {grid[0]} sagittal slices are not divisible by the patch depth {patch[0]}")
    return ViTEncoder(patch[0], tuple(grid[1:]), tuple(patch[1:]), pos_init="sincos", **hparams)


def sincos_table(grid_shape: Sequence[int], dim: int) -> torch.Tensor:
    """MONAI's fixed 2D/3D sin-cos positional table over a patch grid: (1, prod(grid_shape), dim), row-major."""
    with warnings.catch_warnings():  # MONAI calls torch.meshgrid without `indexing` (its default, "ij", is meant)
        warnings.filterwarnings("ignore", message="torch.meshgrid")
        table = build_sincos_position_embedding(list(grid_shape), dim, len(grid_shape))
    return table.detach().float()


def sincos_1d(n: int, dim: int) -> torch.Tensor:
    """MAE's 1D sin-cos code of positions 0..n-1: (n, dim), [sin(k w_m) | cos(k w_m)], w_m = 10000^(-2m/dim)."""
    if dim % 2:
        raise ValueError(f"sincos_1d: dim {dim} must be even")
    omega = 1.0 / 10000 ** (torch.arange(dim // 2, dtype=torch.float64) / (dim / 2))
    angles = torch.arange(n, dtype=torch.float64)[:, None] * omega[None, :]
    return torch.cat([torch.sin(angles), torch.cos(angles)], dim=1).float()


def extend_pos_embed(pos2d: torch.Tensor, n_slabs: int) -> torch.Tensor:
    """2D in-plane table (1, Hp*Wp, D) -> 3D table (1, n_slabs*Hp*Wp, D): pos2d repeated + sincos_1d(slab index)."""
    _, n_inplane, dim = pos2d.shape
    slab = sincos_1d(n_slabs, dim).to(pos2d)  # (n_slabs, D)
    table = pos2d[0][None, :, :] + slab[:, None, :]  # (n_slabs, Hp*Wp, D)
    return table.reshape(1, n_slabs * n_inplane, dim)


def encoder_state_2d_to_3d(state2d: dict[str, torch.Tensor], n_slabs: int) -> dict[str, torch.Tensor]:
    """Map a 2D slab encoder's state dict onto the 3D encoder's names and shapes.

    Conv2d weight (D, s, h, w) -> Conv3d weight (D, 1, s, h, w); positional table extended by
    :func:`extend_pos_embed`; every other tensor (class token and its position, blocks, norm) copied as is.
    """
    state = dict(state2d)
    state["patch_embed.patch_embeddings.weight"] = state2d["patch_embed.patch_embeddings.weight"].unsqueeze(1)
    state["patch_embed.position_embeddings"] = extend_pos_embed(state2d["patch_embed.position_embeddings"], n_slabs)
    return state


def load_encoder_state(
    encoder: ViTEncoder, checkpoint_path: str | os.PathLike, kinds: tuple[str, ...] = ("mae2d", "mae3d")
) -> None:
    """Load the encoder of a MAE checkpoint (its kind one of ``kinds``, see dmriscope.pretrain) into a 3D encoder."""
    try:
        ckpt = torch.load(checkpoint_path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, EOFError, ValueError, pickle.UnpicklingError) as exc:
        raise InputError(f"{checkpoint_path}: cannot read checkpoint ({type(exc).__name__}: {exc})") from None
    if not isinstance(ckpt, dict) or ckpt.get("kind") not in kinds or "model" not in ckpt:
        raise InputError(f"{checkpoint_path}: not a MAE checkpoint of kind {'/'.join(kinds)}")
    state = {k.removeprefix("encoder."): v for k, v in ckpt["model"].items() if k.startswith("encoder.")}
    if ckpt["kind"] == "mae2d":
        state = encoder_state_2d_to_3d(state, encoder.grid_shape[0])
    try:
        encoder.load_state_dict(state)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()
        raise InputError(f"{checkpoint_path}: encoder does not fit this ViT ({' '.join(first[:3])[:300]})") from None
    log.info("loaded %s encoder from %s", ckpt["kind"], checkpoint_path)


def load_pretrained_encoder(model: ViTClassifier, checkpoint_path: str | os.PathLike) -> None:
    """Initialise ``model.backbone`` from a MAE checkpoint (3D, or 2D extended to 3D); the head is untouched."""
    load_encoder_state(model.backbone, checkpoint_path)


def freeze_backbone(model: nn.Module) -> None:
    """Linear probing: every backbone parameter stops requiring grad; only ``model.head`` is fitted."""
    for param in model.backbone.parameters():
        param.requires_grad_(False)
    n_train = sum(p.numel() for p in model.parameters() if p.requires_grad)
    log.info("backbone frozen; %d trainable parameters remain (head)", n_train)
