"""Rule train_model: one model x metric x fold x seed trained on its tensor store, from the config to best.pt.

The loop itself is `dmriscope.engine.fit` (or, for the linear probe, the exact logistic regression of
`dmriscope.linear_probe`); here: the datasets, the run's identity (its fingerprint decides whether a resume state
belongs to it), the metadata every checkpoint carries, and the outputs.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

from dmriscope.augment import RegionOccluder
from dmriscope.checkpoints import build_for_training, clear_checkpoints, fingerprint, save_atomic
from dmriscope.device import make_deterministic, pick_device, torch_threads
from dmriscope.engine import FitResult, fit
from dmriscope.io import InputError, atomic_path
from dmriscope.tensors import VolumeDataset, open_dataset
from dmriscope.train_settings import TrainSettings, arch_section, model_arch, settings_dict

log = logging.getLogger(__name__)


def probe(
    model: nn.Module,
    train_set: Dataset,
    val_set: Dataset,
    settings: TrainSettings,
    device: torch.device,
    occluder: RegionOccluder | None,
) -> FitResult:
    """The linear probe's "training": an exact logistic regression on the frozen features (`dmriscope.linear_probe`)."""
    from dmriscope.linear_probe import fit_linear_probe

    history, state, val_auc = fit_linear_probe(model, train_set, val_set, settings, device, occluder)
    return FitResult(history, state, 1, val_auc, False)


def _file_id(path: str | Path) -> list[int]:
    stat = Path(path).stat()
    return [stat.st_size, stat.st_mtime_ns]


def _occluder(settings: TrainSettings, atlas: str | None, wm_mask: str | None) -> RegionOccluder | None:
    if settings.augment_occlude <= 0:
        return None
    if atlas is None or wm_mask is None:
        raise InputError("config key 'train.augment_occlude' > 0 needs the grid atlas and WM mask")
    return RegionOccluder(np.load(atlas), np.load(wm_mask), settings.augment_occlude)


def _metadata(
    *,
    model: str,
    arch: dict,
    settings: TrainSettings,
    train_set: VolumeDataset,
    n_val: int,
    result: FitResult,
    grid: list[int],
    device: str,
    split_sha256: str,
    pretrained: str | None,
) -> dict:
    """hparams.json (and best.pt's metadata): what was trained on what, and how the selection went."""
    n_positive = int(train_set.labels.sum())
    return {
        "model": model,
        "registry_name": arch_section(model),
        "arch": arch,
        "grid": grid,
        "norm": train_set.norm.summary or {"mean": train_set.norm.mean, "std": train_set.norm.std},
        "train": settings_dict(settings),
        "seed": settings.seed,
        "torch": torch.__version__,
        "device": device,
        "split_sha256": split_sha256,
        "pretrained": pretrained,
        "n_train": len(train_set),
        "n_val": n_val,
        "n_train_positive": n_positive,
        "n_train_negative": len(train_set) - n_positive,
        "best_epoch": result.best_epoch,
        "best_val_auc": None if np.isnan(result.best_val_auc) else result.best_val_auc,
        "epochs_run": len(result.history),
        "stopped_early": result.stopped_early,
    }


def train_model_files(
    *,
    model: str,
    tensor: str,
    index: str,
    norm: str,
    brain_mask: str,
    split_digest: str,
    pretrained: str | None,
    train: dict[str, Any],
    models: dict[str, Any],
    grid: list[int],
    checkpoint_dir: str,
    best: str,
    history: str,
    hparams: str,
    threads: int | None = None,
    device: str | None = None,
    atlas: str | None = None,
    wm_mask: str | None = None,
    norm_voxels: str | None = None,
) -> FitResult:
    """Rule train_model: train ``model`` on one metric's tensor store; write best.pt, history.jsonl and
    hparams.json (the resume state lives in ``checkpoint_dir``, removed once the outputs are written).
    ``atlas``/``wm_mask``: the grid .npy files, needed when ``train.augment_occlude`` > 0; ``norm_voxels``: the
    fold's voxel statistics, needed with voxel normalisation."""
    settings = TrainSettings.from_config(train, model)
    train_set = open_dataset(tensor, index, norm, brain_mask, ["train"], norm_voxels=norm_voxels)
    val_set = open_dataset(tensor, index, norm, brain_mask, ["val"], norm_voxels=norm_voxels)
    if tuple(train_set.store.shape[1:]) != tuple(grid):
        raise InputError(f"{tensor}: grid {train_set.store.shape[1:]} is not config key 'grid' {list(grid)}")
    arch = model_arch(model, models)
    split_sha = Path(split_digest).read_text().split()[0]
    occluder = _occluder(settings, atlas, wm_mask)
    dev = pick_device(device)
    make_deterministic()
    with torch_threads(threads):
        net = build_for_training(model, tuple(grid), arch, pretrained, settings.seed)
        log.info("%s: %d training / %d validation subjects on %s, %d threads", model, len(train_set), len(val_set),
                 dev, torch.get_num_threads())  # fmt: skip
        if model == "vit_linprobe":
            result = probe(net, train_set, val_set, settings, dev, occluder)
        else:
            identity = {"model": model, "arch": arch, "train": settings_dict(settings), "grid": list(grid),
                        "split": split_sha, "tensor": _file_id(tensor),
                        "pretrained": _file_id(pretrained) if pretrained else None}  # fmt: skip
            result = fit(
                net, train_set, val_set, settings, checkpoint_dir, fingerprint(identity), dev, occluder=occluder
            )
    meta = _metadata(model=model, arch=arch, settings=settings, train_set=train_set, n_val=len(val_set), result=result,
                     grid=list(grid), device=str(dev), split_sha256=split_sha, pretrained=pretrained)  # fmt: skip
    save_atomic({"state_dict": result.best_state, **meta, "normaliser": train_set.norm.state()}, best)
    with atomic_path(history) as tmp:
        Path(tmp).write_text("".join(json.dumps(r) + "\n" for r in result.history))
    with atomic_path(hparams) as tmp:
        Path(tmp).write_text(json.dumps(meta, indent=2) + "\n")
    clear_checkpoints(checkpoint_dir)
    log.info("%s: best validation AUC %.3f at epoch %d", model, result.best_val_auc, result.best_epoch)
    return result
