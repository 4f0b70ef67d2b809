"""Masked autoencoder around a :class:`~dmriscope.models.vit.ViTEncoder`, after facebookresearch/mae.

Per sample, the patch tokens are shuffled by ``argsort`` of uniform noise and the first ``round(N * (1 - ratio))``
are kept (the visible patches); the encoder sees only those (plus the class token). The decoder embeds the latent
to ``decoder_dim``, appends a learned mask token for every dropped patch, un-shuffles, adds a fixed sin-cos
positional table, runs ``decoder_depth`` pre-norm blocks and predicts every patch's voxels. The loss is the mean
squared error over the masked patches only (optionally against per-patch normalised targets, MAE's norm_pix_loss).

Patches are flattened as (channel, p1, p2[, p3]) - the order of the Conv patch-embedding weight - so a 2D slab
patch (s channels x h x w) and a 3D patch (1 x s x h x w) hold the same values in the same order.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from dmriscope.models.vit import PreNormBlock, ViTEncoder, init_transformer_weights, run_blocks, sincos_table


def patchify(x: torch.Tensor, patch: Sequence[int]) -> torch.Tensor:
    """(B, C, *spatial) -> (B, N, C * prod(patch)); patches in row-major grid order, values as (C, p1, p2, ...)."""
    b, c, *spatial = x.shape
    grid = [s // p for s, p in zip(spatial, patch)]
    nd = len(patch)
    split = [b, c] + [v for pair in zip(grid, patch) for v in pair]  # B, C, n1, p1, n2, p2, ...
    order = [0] + [2 + 2 * i for i in range(nd)] + [1] + [3 + 2 * i for i in range(nd)]
    return x.reshape(split).permute(order).reshape(b, math.prod(grid), c * math.prod(patch))


def unpatchify(patches: torch.Tensor, patch: Sequence[int], img_size: Sequence[int], channels: int) -> torch.Tensor:
    """Inverse of :func:`patchify`: (B, N, C * prod(patch)) -> (B, C, *img_size)."""
    b = patches.shape[0]
    grid = [s // p for s, p in zip(img_size, patch)]
    nd = len(patch)
    x = patches.reshape([b, *grid, channels, *patch])
    order = [0, nd + 1] + [v for i in range(nd) for v in (1 + i, nd + 2 + i)]
    return x.permute(order).reshape(b, channels, *img_size)


def n_visible(n_patches: int, mask_ratio: float) -> int:
    """Patches kept visible per sample: round(N * (1 - mask_ratio)), at least 1."""
    return max(1, round(n_patches * (1.0 - mask_ratio)))


def random_masking(tokens: torch.Tensor, mask_ratio: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-sample random masking by argsort of uniform noise (draws from torch's global RNG).

    Args:
        tokens: (B, N, D) patch tokens. mask_ratio: fraction of patches to drop.
    Returns:
        visible tokens (B, K, D) with K = :func:`n_visible`; mask (B, N), 1 = masked, 0 = visible, in the original
        patch order; ids_restore (B, N), the permutation that un-shuffles [visible, masked] back to patch order.
    """
    b, n, d = tokens.shape
    keep = n_visible(n, mask_ratio)
    noise = torch.rand(b, n, device=tokens.device)
    ids_shuffle = torch.argsort(noise, dim=1)
    ids_restore = torch.argsort(ids_shuffle, dim=1)
    ids_keep = ids_shuffle[:, :keep]
    visible = torch.gather(tokens, 1, ids_keep[:, :, None].expand(-1, -1, d))
    mask = torch.ones(b, n, device=tokens.device)
    mask[:, :keep] = 0
    return visible, torch.gather(mask, 1, ids_restore), ids_restore


def normalise_patches(patches: torch.Tensor) -> torch.Tensor:
    """Each patch (last axis) to zero mean and unit variance (eps 1e-6): MAE's norm_pix_loss targets."""
    mean, var = patches.mean(dim=-1, keepdim=True), patches.var(dim=-1, keepdim=True)
    return (patches - mean) / (var + 1.0e-6) ** 0.5


def masked_mse(target: torch.Tensor, pred: torch.Tensor, mask: torch.Tensor, norm_pix: bool = False) -> torch.Tensor:
    """Mean over masked patches of the per-patch mean squared error.

    Args:
        target, pred: (B, N, P) patch values. mask: (B, N), 1 = masked (counted), 0 = visible (ignored).
        norm_pix: normalise each target patch to zero mean, unit variance (eps 1e-6) first.
    """
    if norm_pix:
        target = normalise_patches(target)
    per_patch = ((pred.float() - target.float()) ** 2).mean(dim=-1)
    return (per_patch * mask).sum() / mask.sum()


class MaskedAutoencoder(nn.Module):
    """MAE: the ViT ``encoder`` on visible patches + a light transformer decoder predicting every patch.

    Args:
        encoder: a ViTEncoder (3D on (B, 1, S, H, W) or 2D on slabs (B, s, H, W)).
        decoder_dim, decoder_depth, decoder_heads: decoder width, blocks, heads (MLP = 4 x width).
        mask_ratio: fraction of patches masked per sample. norm_pix_loss: per-patch normalised targets.
    """

    def __init__(
        self,
        encoder: ViTEncoder,
        decoder_dim: int = 192,
        decoder_depth: int = 4,
        decoder_heads: int = 6,
        mask_ratio: float = 0.75,
        norm_pix_loss: bool = False,
    ) -> None:
        super().__init__()
        if not 0.0 < mask_ratio < 1.0:
            raise ValueError(f"mae: mask_ratio must be in (0, 1), got {mask_ratio!r}")
        if decoder_dim % decoder_heads or decoder_dim % (2 * len(encoder.grid_shape)):
            raise ValueError(f"mae: decoder_dim {decoder_dim} must divide by heads and by 2 x spatial dims")
        self.encoder = encoder
        self.mask_ratio, self.norm_pix_loss = float(mask_ratio), bool(norm_pix_loss)
        self.channels = encoder.patch_embed.patch_embeddings.in_channels
        self.patch_voxels = self.channels * math.prod(encoder.patch)
        self.decoder_embed = nn.Linear(encoder.dim, decoder_dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, decoder_dim))
        pos = torch.cat([torch.zeros(1, 1, decoder_dim), sincos_table(encoder.grid_shape, decoder_dim)], dim=1)
        self.register_buffer("decoder_pos", pos, persistent=False)  # fixed: rebuilt, never saved
        blocks = (PreNormBlock(decoder_dim, decoder_heads, 4 * decoder_dim) for _ in range(decoder_depth))
        self.decoder_blocks = nn.ModuleList(blocks)
        self.decoder_norm = nn.LayerNorm(decoder_dim)
        self.decoder_pred = nn.Linear(decoder_dim, self.patch_voxels)
        for part in (self.decoder_embed, self.decoder_blocks, self.decoder_norm, self.decoder_pred):
            part.apply(init_transformer_weights)
        nn.init.normal_(self.mask_token, std=0.02)

    def patchify(self, x: torch.Tensor) -> torch.Tensor:
        """Input (B, C, *img_size) -> patch values (B, N, P)."""
        return patchify(x, self.encoder.patch)

    def unpatchify(self, patches: torch.Tensor) -> torch.Tensor:
        """Patch values (B, N, P) -> (B, C, *img_size)."""
        return unpatchify(patches, self.encoder.patch, self.encoder.img_size, self.channels)

    def forward_encoder(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Latent (B, 1+K, D) of the visible patches, mask (B, N) and ids_restore (B, N)."""
        visible, mask, ids_restore = random_masking(self.encoder.embed(x), self.mask_ratio)
        return self.encoder.encode_tokens(visible), mask, ids_restore

    def forward_decoder(self, latent: torch.Tensor, ids_restore: torch.Tensor) -> torch.Tensor:
        """Predicted patch values (B, N, P) from the latent (B, 1+K, D)."""
        x = self.decoder_embed(latent)
        b, n = ids_restore.shape
        fill = self.mask_token.expand(b, n + 1 - x.shape[1], -1)
        patches = torch.cat([x[:, 1:], fill], dim=1)
        patches = torch.gather(patches, 1, ids_restore[:, :, None].expand(-1, -1, x.shape[2]))
        x = torch.cat([x[:, :1], patches], dim=1) + self.decoder_pos
        x = self.decoder_norm(run_blocks(self.decoder_blocks, x, self.encoder.checkpointing and self.training))
        return self.decoder_pred(x)[:, 1:]

    def loss(self, x: torch.Tensor, pred: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Masked-patch MSE of ``pred`` (B, N, P) against the patches of ``x``."""
        return masked_mse(self.patchify(x), pred, mask, self.norm_pix_loss)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Loss (scalar), predictions (B, N, P) and mask (B, N) for a batch (B, C, *img_size)."""
        latent, mask, ids_restore = self.forward_encoder(x)
        pred = self.forward_decoder(latent, ids_restore)
        return self.loss(x, pred, mask), pred, mask
