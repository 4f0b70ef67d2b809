"""Checkpoints and models: building a workflow model for training, saving and resuming a run, loading a trained one.

Checkpoints come in two kinds. The resume state (``last.pt``: weights, optimiser, scheduler, history, early-stopping
state, the best weights so far, a fingerprint of the run) is one file, written atomically after every epoch, in a
checkpoint folder that is NOT a declared Snakemake output (Snakemake deletes declared outputs before re-running an
incomplete job); a damaged or foreign one is reported in the log and the run starts over. The final ``best.pt``
(state dict + model name + hyper-parameters + grid + normalisation) is written once, at the end, by
`dmriscope.train_run.train_model_files`.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from dmriscope.config import PRETRAINED, REGISTRY_NAMES, WORKFLOW_MODELS
from dmriscope.device import pick_device
from dmriscope.io import InputError, atomic_path
from dmriscope.normalise import Normaliser

log = logging.getLogger(__name__)


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
