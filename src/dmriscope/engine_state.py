"""What the training engine keeps around it: settings, seeding, device, schedule, loss, checkpoints, model building.

Checkpoints come in two kinds. The resume state (``last.pt``: weights, optimiser, scheduler, history, early-stopping
state, the best weights so far, a fingerprint of the run) is one file, written atomically after every epoch, in a
checkpoint folder that is NOT a declared Snakemake output (Snakemake deletes declared outputs before re-running an
incomplete job); a damaged or foreign one is reported in the log and the run starts over. The final ``best.pt``
(state dict + model name + hyper-parameters + grid + normalisation) is written once, at the end, by
`dmriscope.train_run.train_model_files`.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import os
import random
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from dmriscope.config import PRETRAINED, REGISTRY_NAMES, WORKFLOW_MODELS
from dmriscope.io import InputError, atomic_path
from dmriscope.normalise import Normaliser

log = logging.getLogger(__name__)


def model_arch(model_name: str, models_cfg: Mapping[str, Any]) -> dict[str, Any]:
    """The architecture keywords of ``model_name``: its registry model's config section; the linear probe adds a
    feature BatchNorm before its head (MAE's linear-probing recipe, no parameter: `models.vit.ViTClassifier`)."""
    arch = dict(models_cfg.get(REGISTRY_NAMES.get(model_name, model_name), {}))
    if model_name == "vit_linprobe":
        arch["head_norm"] = True
    return arch


@dataclass(frozen=True)
class TrainSettings:
    """Optimiser, schedule and loop settings (config ``train``; per-model ``overrides`` merged in).

    Attributes:
        epochs: maximum number of epochs.
        batch_size: subjects per optimiser step.
        lr: peak learning rate of AdamW (after warm-up).
        weight_decay: AdamW decoupled weight decay (not applied to biases and norm weights, ndim <= 1).
        patience: stop after this many epochs without a better validation AUC (counted after the warm-up).
        warmup_epochs: linear warm-up from 0 to ``lr`` over this many epochs, then cosine decay; model selection
            starts after the warm-up (`dmriscope.engine.selection_start`).
        min_lr_ratio: the cosine ends at ``lr * min_lr_ratio``.
        seed: seeds weights, shuffling, dropout and augmentation.
        augment_shift: maximum random shift in voxels per axis (0 = no augmentation).
        augment_occlude: probability that a training volume gets 1-3 random atlas regions occluded as in
            `dmriscope.occlusion` (set to the volume's mean white-matter value); 0 = off.
        grad_clip: clip the global gradient norm to this (0 = off).
        num_workers: DataLoader worker processes.
    """

    epochs: int = 30
    batch_size: int = 8
    lr: float = 3e-4
    weight_decay: float = 0.05
    patience: int = 10
    warmup_epochs: int = 2
    min_lr_ratio: float = 0.01
    seed: int = 0
    augment_shift: int = 0
    augment_occlude: float = 0.0
    grad_clip: float = 1.0
    num_workers: int = 0

    @classmethod
    def from_config(cls, train: Mapping[str, Any], model: str) -> TrainSettings:
        """Settings for ``model`` from the ``train`` config section: top-level values, then ``overrides[model]``."""
        names = {f.name for f in fields(cls)}
        values = {k: v for k, v in train.items() if k in names}
        values.update(train.get("overrides", {}).get(model, {}))
        unknown = set(values) - names
        if unknown:
            raise InputError(f"config key 'train.overrides.{model}': unknown keys {sorted(unknown)}")
        return cls(**values)


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def make_deterministic() -> None:
    """Deterministic kernels where torch has them (warn, not fail, where it has none)."""
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # deterministic cuBLAS (read at CUDA start)
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.benchmark = False


def pick_device(device: str | torch.device | None = None) -> torch.device:
    """``device`` if given, else CUDA when available, else CPU."""
    if device is not None:
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def autocast(device: torch.device) -> contextlib.AbstractContextManager:
    """bf16 autocast on CUDA; nothing on CPU (float32 there, for determinism)."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def warmup_cosine(step: int, warmup_steps: int, total_steps: int, min_ratio: float) -> float:
    """LR multiplier at optimiser step ``step`` (0-based): linear warm-up to 1, cosine down to ``min_ratio``."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    span = max(1, total_steps - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / span)
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def make_optimizer(model: nn.Module, settings: TrainSettings) -> torch.optim.AdamW:
    """AdamW over the trainable parameters; no weight decay on biases and norm weights (ndim <= 1)."""
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if not trainable:
        raise ValueError("the model has no trainable parameter")
    decay = [p for _, p in trainable if p.ndim > 1]
    no_decay = [p for _, p in trainable if p.ndim <= 1]
    groups = [{"params": decay, "weight_decay": settings.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW([g for g in groups if g["params"]], lr=settings.lr)


class BalancedLoss(nn.Module):
    """Class-weighted loss for logits (B, 1) (BCE with pos_weight = n_female / n_male) or (B, 2) (cross-entropy
    with class weights n / (2 n_c)); labels (B,) with 1 = male. Returns the mean loss (float32)."""

    def __init__(self, n_female: int, n_male: int) -> None:
        super().__init__()
        if n_female < 1 or n_male < 1:
            raise InputError(f"training set needs both sexes (has {n_female} female, {n_male} male)")
        n = n_female + n_male
        self.register_buffer("pos_weight", torch.tensor([n_female / n_male]))
        self.register_buffer("class_weight", torch.tensor([n / (2 * n_female), n / (2 * n_male)]))

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        logits = logits.float()
        if logits.shape[1] == 1:
            return nn.functional.binary_cross_entropy_with_logits(
                logits[:, 0], labels.float(), pos_weight=self.pos_weight
            )
        return nn.functional.cross_entropy(logits, labels.long(), weight=self.class_weight)


def fingerprint(identity: Mapping[str, Any]) -> str:
    """SHA-256 of a JSON-able description of a run; a checkpoint resumes only a run with the same one."""
    return hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()


def save_atomic(obj: Any, path: str | Path) -> None:
    """torch.save to a temporary name beside ``path``, then rename."""
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def load_resume_state(checkpoint_dir: str | Path, run_id: str) -> dict | None:
    """The resume state in ``checkpoint_dir/last.pt`` if it belongs to this run (same fingerprint), else None."""
    path = Path(checkpoint_dir) / "last.pt"
    if not path.exists():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # a checkpoint from an older torch or a damaged file: start over, loudly
        log.warning("%s: cannot read (%s); starting from scratch", path, exc)
        return None
    if not isinstance(state, dict) or "best_state" not in state:
        log.warning("%s: not a resume state of this version; starting from scratch", path)
        return None
    if state.get("fingerprint") != run_id:
        log.warning("%s belongs to a different run (settings, data or split changed); starting from scratch", path)
        return None
    return state


def clear_checkpoints(checkpoint_dir: str | Path) -> None:
    """Remove the resume files after a run completed (a forced re-run then starts from scratch)."""
    for name in ("last.pt", "best_state.pt"):  # best_state.pt: the separate file of earlier versions
        (Path(checkpoint_dir) / name).unlink(missing_ok=True)


def build_for_training(
    model_name: str, grid: tuple[int, int, int], arch: Mapping[str, Any], pretrained: str | Path | None, seed: int
) -> nn.Module:
    """The workflow model ``model_name``, weights seeded; vit_linprobe / vit_finetune start from the MAE encoder at
    ``pretrained`` and vit_linprobe freezes the backbone."""
    from dmriscope.models.registry import build_model

    if model_name not in REGISTRY_NAMES:
        raise InputError(f"unknown model {model_name!r}; known: {', '.join(WORKFLOW_MODELS)}")
    torch.manual_seed(seed)
    try:
        model = build_model(REGISTRY_NAMES[model_name], grid, **dict(arch))
    except (TypeError, ValueError) as exc:
        raise InputError(f"config key 'models.{REGISTRY_NAMES[model_name]}': {exc}") from None
    if model_name in PRETRAINED:
        from dmriscope.models.vit import freeze_backbone, load_pretrained_encoder

        if not pretrained:
            raise InputError(f"model {model_name}: needs a pretrained MAE encoder")
        load_pretrained_encoder(model, pretrained)
        if model_name == "vit_linprobe":
            freeze_backbone(model)
    return model


def load_model(checkpoint_path: str | Path, device: str | torch.device | None = None) -> tuple[nn.Module, dict]:
    """The trained model from a ``best.pt`` (eval mode, on ``device``) and its metadata (everything but weights).

    ``info`` holds at least: model, registry_name, arch, grid, norm {mean, std}, best_epoch, val_auc, train.
    """
    from dmriscope.models.registry import build_model

    path = Path(checkpoint_path)
    if not path.exists():
        raise InputError(f"{path}: checkpoint not found")
    try:
        saved = torch.load(path, map_location="cpu", weights_only=False)
        state = saved["state_dict"]
    except Exception as exc:
        raise InputError(f"{path}: not a dmriscope checkpoint ({type(exc).__name__}: {exc})") from None
    info = {k: v for k, v in saved.items() if k != "state_dict"}
    model = build_model(info["registry_name"], tuple(info["grid"]), **info["arch"])
    model.load_state_dict(state)
    return model.to(pick_device(device)).eval(), info


def checkpoint_normaliser(info: Mapping[str, Any], checkpoint_path: str | Path) -> Normaliser:
    """The input normalisation a model was trained with (its checkpoint's training-set statistics)."""
    if "normaliser" in info:
        return Normaliser.from_state(info["normaliser"])
    raise InputError(f"{checkpoint_path}: checkpoint holds no input normalisation")


@contextlib.contextmanager
def torch_threads(threads: int | None) -> Iterator[None]:
    """Run the block with ``threads`` intra-op threads (None = leave torch's choice)."""
    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(int(threads))
    try:
        yield
    finally:
        torch.set_num_threads(before)


def settings_dict(settings: TrainSettings) -> dict:
    return asdict(settings)
