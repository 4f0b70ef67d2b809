"""Optimisation shared by classifier training and MAE pretraining: AdamW with the usual weight-decay exclusions, the
per-step linear warm-up + cosine schedule, and the class-balanced loss."""

from __future__ import annotations

import math
from collections.abc import Collection

import torch
from torch import nn

from dmriscope.io import InputError


def warmup_cosine(step: int, warmup_steps: int, total_steps: int, min_ratio: float) -> float:
    """LR multiplier at optimiser step ``step`` (0-based): linear warm-up to 1, cosine down to ``min_ratio``."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    span = max(1, total_steps - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / span)
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def warmup_cosine_schedule(
    optimizer: torch.optim.Optimizer, warmup_steps: int, total_steps: int, min_ratio: float
) -> torch.optim.lr_scheduler.LambdaLR:
    """A scheduler stepped once per optimiser step with the `warmup_cosine` multiplier."""
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: warmup_cosine(step, warmup_steps, total_steps, min_ratio)
    )


def adamw(
    model: nn.Module,
    lr: float,
    weight_decay: float,
    *,
    betas: tuple[float, float] = (0.9, 0.999),
    no_decay_names: Collection[str] = (),
) -> torch.optim.AdamW:
    """AdamW over the trainable parameters; no weight decay on 1-D parameters (biases, norm weights) nor on those
    whose last name part is in ``no_decay_names`` (the MAE's tokens and positional tables)."""
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if param.requires_grad:
            skip = param.ndim <= 1 or name.rsplit(".", 1)[-1] in no_decay_names
            (no_decay if skip else decay).append(param)
    if not decay and not no_decay:
        raise ValueError("the model has no trainable parameter")
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW([g for g in groups if g["params"]], lr=lr, betas=betas)


class BalancedLoss(nn.Module):
    """Class-weighted loss for logits (B, 1) (BCE with pos_weight = n_negative / n_positive) or (B, 2) (cross-entropy
    with class weights n / (2 n_c)); labels (B,) with 1 = positive. Returns the mean loss (float32)."""

    def __init__(self, n_negative: int, n_positive: int) -> None:
        super().__init__()
        if n_negative < 1 or n_positive < 1:
            raise InputError(f"training set needs both classes (has {n_negative} negative, {n_positive} positive)")
        n = n_negative + n_positive
        self.register_buffer("pos_weight", torch.tensor([n_negative / n_positive]))
        self.register_buffer("class_weight", torch.tensor([n / (2 * n_negative), n / (2 * n_positive)]))

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        logits = logits.float()
        if logits.shape[1] == 1:
            return nn.functional.binary_cross_entropy_with_logits(
                logits[:, 0], labels.float(), pos_weight=self.pos_weight
            )
        return nn.functional.cross_entropy(logits, labels.long(), weight=self.class_weight)
