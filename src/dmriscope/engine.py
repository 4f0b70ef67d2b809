"""The training engine: AdamW with warm-up + cosine, class-balanced loss, model selection and early stopping on the
validation AUC, a resumable checkpoint every epoch, deterministic on CPU.

Determinism and exact resume: the weights are seeded once (``settings.seed``); every epoch ``e`` reseeds the global
torch RNG (dropout) and seeds its own shuffling/augmentation generator from ``(seed, e)``, so an epoch does the same
work whether the run got there in one go or was restarted from the epoch ``e - 1`` checkpoint (which restores
weights, optimiser, scheduler, history and early-stopping state).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.metrics import roc_auc_score
from torch import nn
from torch.utils.data import DataLoader, Dataset

from dmriscope.augment import RegionOccluder, random_shift
from dmriscope.engine_state import (
    REGISTRY_NAMES,
    BalancedLoss,
    TrainSettings,
    autocast,
    build_for_training,
    clear_checkpoints,
    fingerprint,
    load_resume_state,
    make_deterministic,
    make_optimizer,
    model_arch,
    pick_device,
    save_atomic,
    settings_dict,
    torch_threads,
    warmup_cosine,
)
from dmriscope.io import InputError, atomic_path, progress
from dmriscope.tensors import open_dataset

log = logging.getLogger(__name__)
EpochCallback = Callable[[dict], None]


@dataclass
class FitResult:
    """What `fit` returns: per-epoch history, the best weights and when they were seen."""

    history: list[dict]
    best_state: dict[str, torch.Tensor]
    best_epoch: int
    best_val_auc: float
    stopped_early: bool


def epoch_seed(seed: int, epoch: int) -> int:
    """The seed of epoch ``epoch`` (0-based) of a run seeded with ``seed``."""
    return (seed * 1_000_003 + 7919 * (epoch + 1)) % 2**63


def set_train_mode(model: nn.Module) -> None:
    """Training mode, except a fully frozen backbone, which stays in eval mode (no dropout)."""
    model.train()
    backbone = getattr(model, "backbone", None)
    if backbone is not None and not any(p.requires_grad for p in backbone.parameters()):
        backbone.eval()


def train_one_epoch(
    model: nn.Module,
    loader: DataLoader,
    criterion: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    device: torch.device,
    settings: TrainSettings,
    generator: torch.Generator,
    occluder: RegionOccluder | None = None,
) -> float:
    """One pass over ``loader`` (scheduler stepped per batch); returns the mean training loss per subject."""
    set_train_mode(model)
    total, count = 0.0, 0
    for x, y in progress(loader, desc="train", total=len(loader)):
        if occluder is not None:
            x = occluder(x, generator)
        x = random_shift(x, settings.augment_shift, generator).to(device)
        y = y.to(device)
        with autocast(device):
            logits = model(x)
        loss = criterion(logits, y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if settings.grad_clip > 0:
            nn.utils.clip_grad_norm_(model.parameters(), settings.grad_clip)
        optimizer.step()
        scheduler.step()
        total += float(loss.detach()) * len(y)
        count += len(y)
    return total / max(count, 1)


@torch.no_grad()
def predict(
    model: nn.Module, dataset: Dataset, device: torch.device, batch_size: int = 8, criterion: nn.Module | None = None
) -> tuple[np.ndarray, np.ndarray, float]:
    """P(male) (N,), labels (N,) in dataset order, and the mean loss under ``criterion`` (nan without one)."""
    from dmriscope.models.registry import positive_probability

    model.eval()
    probs, labels, total = [], [], 0.0
    for x, y in DataLoader(dataset, batch_size=batch_size, shuffle=False):
        with autocast(device):
            logits = model(x.to(device))
        if criterion is not None:
            total += float(criterion(logits, y.to(device))) * len(y)
        probs.append(positive_probability(logits).float().cpu().numpy())
        labels.append(y.numpy())
    p, y_all = np.concatenate(probs), np.concatenate(labels)
    return p, y_all, total / len(y_all) if criterion is not None else float("nan")


def safe_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """ROC AUC, or nan when only one class is present."""
    return float(roc_auc_score(labels, scores)) if len(np.unique(labels)) == 2 else float("nan")


def _is_better(auc: float, loss: float, best: dict) -> bool:
    """Higher validation AUC wins; an equal AUC wins with a lower validation loss."""
    if np.isnan(auc):
        return False
    return auc > best["auc"] or (auc == best["auc"] and loss < best["loss"])


def snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    """A CPU copy of the model's state dict."""
    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}


def selection_start(settings: TrainSettings) -> int:
    """The first epoch (0-based) that model selection and early stopping consider: the one after the warm-up.

    During warm-up the learning rate is still ramping up and the model is close to its initialisation; with a small
    validation set such a model can win on noise (null cohort, 20 validation subjects: cnn3d on FA chose epoch 1 at
    validation AUC 0.72 and scored test AUC 0.72). The last epoch is always a candidate.
    """
    return min(settings.warmup_epochs, settings.epochs - 1)


def fit(
    model: nn.Module,
    train_set: Dataset,
    val_set: Dataset,
    settings: TrainSettings,
    checkpoint_dir: str | Path,
    run_id: str = "",
    device: torch.device | None = None,
    on_epoch_end: EpochCallback | None = None,
    occluder: RegionOccluder | None = None,
) -> FitResult:
    """Train ``model`` (already built and seeded) and return the best-on-validation weights and the history.

    Resumes from ``checkpoint_dir/last.pt`` when it carries the same ``run_id``. ``train_set`` items are
    (x (1, S, H, W), y) with y = 1 for male and must expose ``labels`` (N,). ``on_epoch_end(record)`` runs after each
    epoch's checkpoint is written. ``occluder``: the region-occlusion augmentation (``settings.augment_occlude``).
    """
    device = device or pick_device()
    checkpoint_dir = Path(checkpoint_dir)
    model.to(device)
    labels = np.asarray(train_set.labels)
    criterion = BalancedLoss(int((labels == 0).sum()), int((labels == 1).sum())).to(device)
    optimizer = make_optimizer(model, settings)
    drop_last = len(train_set) > settings.batch_size and len(train_set) % settings.batch_size == 1  # no 1-sample BN
    steps = len(train_set) // settings.batch_size if drop_last else -(-len(train_set) // settings.batch_size)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda step: warmup_cosine(
            step, settings.warmup_epochs * steps, settings.epochs * steps, settings.min_lr_ratio
        ),
    )
    history: list[dict] = []
    best = {"epoch": -1, "auc": -np.inf, "loss": np.inf}
    best_state = snapshot(model)
    bad_epochs, start = 0, 0
    resume = load_resume_state(checkpoint_dir, run_id)
    if resume is not None:
        model.load_state_dict(resume["model"])
        optimizer.load_state_dict(resume["optimizer"])
        scheduler.load_state_dict(resume["scheduler"])
        history, best, bad_epochs = resume["history"], resume["best"], resume["bad_epochs"]
        best_state = resume["best_state"]
        start = len(history)
        log.info("resuming from %s after epoch %d", checkpoint_dir / "last.pt", start)
    stopped = bad_epochs >= settings.patience
    first_candidate = selection_start(settings)
    for epoch in range(start, settings.epochs if not stopped else start):
        t0 = time.perf_counter()
        torch.manual_seed(epoch_seed(settings.seed, epoch))
        generator = torch.Generator().manual_seed(epoch_seed(settings.seed, epoch))
        loader = DataLoader(
            train_set,
            batch_size=settings.batch_size,
            shuffle=True,
            generator=generator,
            num_workers=settings.num_workers,
            drop_last=drop_last,
        )
        lr = optimizer.param_groups[0]["lr"]
        train_loss = train_one_epoch(
            model, loader, criterion, optimizer, scheduler, device, settings, generator, occluder
        )
        p_val, y_val, val_loss = predict(model, val_set, device, settings.batch_size, criterion)
        val_auc = safe_auc(y_val, p_val)
        record = {
            "epoch": epoch + 1,
            "train_loss": train_loss,
            "val_loss": val_loss,
            "val_auc": None if np.isnan(val_auc) else val_auc,
            "lr": lr,
            "seconds": round(time.perf_counter() - t0, 3),
        }
        history.append(record)
        if epoch >= first_candidate:  # warm-up epochs are not selectable, and patience does not run in them
            if _is_better(val_auc, val_loss, best):
                best, bad_epochs = {"epoch": epoch + 1, "auc": val_auc, "loss": val_loss}, 0
                best_state = snapshot(model)
            else:
                bad_epochs += 1
        if best["epoch"] < 0:  # no defined validation AUC yet (a one-class validation set): keep the latest
            best_state = snapshot(model)
        state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict()}
        resume_state = {"history": history, "best": best, "bad_epochs": bad_epochs, "best_state": best_state}
        # one file, written atomically, holds everything a resume needs: no crash leaves a half-updated pair
        save_atomic({"fingerprint": run_id, **state, **resume_state}, checkpoint_dir / "last.pt")
        log.info("epoch %s", json.dumps(record))
        if on_epoch_end is not None:
            on_epoch_end(record)
        if bad_epochs >= settings.patience:
            log.info("early stop after epoch %d: no better validation AUC for %d epochs", epoch + 1, bad_epochs)
            stopped = True
            break
    best_auc = float(best["auc"]) if np.isfinite(best["auc"]) else float("nan")
    return FitResult(history, best_state, best["epoch"], best_auc, stopped)


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


def train_model_files(
    model_name: str,
    tensor: str,
    index: str,
    norm: str,
    brain_mask: str,
    split_digest: str,
    pretrained: str | None,
    train_cfg: dict[str, Any],
    models_cfg: dict[str, Any],
    grid: list[int],
    checkpoint_dir: str,
    out_best: str,
    out_history: str,
    out_hparams: str,
    threads: int | None = None,
    device: str | None = None,
    atlas: str | None = None,
    wm_mask: str | None = None,
) -> FitResult:
    """Rule train_model: train ``model_name`` on one metric's tensor store; write best.pt, history.jsonl and
    hparams.json (the resume state lives in ``checkpoint_dir``, removed once the outputs are written).
    ``atlas``/``wm_mask``: the grid .npy files, needed when ``train.augment_occlude`` > 0."""
    settings = TrainSettings.from_config(train_cfg, model_name)
    train_set = open_dataset(tensor, index, norm, brain_mask, ["train"])
    val_set = open_dataset(tensor, index, norm, brain_mask, ["val"])
    if tuple(train_set.store.shape[1:]) != tuple(grid):
        raise InputError(f"{tensor}: grid {train_set.store.shape[1:]} is not config key 'grid' {list(grid)}")
    registry_name = REGISTRY_NAMES.get(model_name, model_name)
    arch = model_arch(model_name, models_cfg)
    split_sha = Path(split_digest).read_text().split()[0]
    identity = {
        "model": model_name,
        "arch": arch,
        "train": settings_dict(settings),
        "grid": list(grid),
        "split": split_sha,
        "tensor": _file_id(tensor),
        "pretrained": _file_id(pretrained) if pretrained else None,
    }
    occluder = None
    if settings.augment_occlude > 0:
        if atlas is None or wm_mask is None:
            raise InputError("config key 'train.augment_occlude' > 0 needs the grid atlas and WM mask")
        occluder = RegionOccluder(np.load(atlas), np.load(wm_mask), settings.augment_occlude)
    dev = pick_device(device)
    make_deterministic()
    with torch_threads(threads):
        model = build_for_training(model_name, tuple(grid), arch, pretrained, settings.seed)
        log.info(
            "%s: %d training / %d validation subjects on %s, %d threads",
            model_name,
            len(train_set),
            len(val_set),
            dev,
            torch.get_num_threads(),
        )
        if model_name == "vit_linprobe":
            result = probe(model, train_set, val_set, settings, dev, occluder)
        else:
            run_id = fingerprint(identity)
            result = fit(model, train_set, val_set, settings, checkpoint_dir, run_id, dev, occluder=occluder)
    n_male = int(train_set.labels.sum())
    meta = {
        "model": model_name,
        "registry_name": registry_name,
        "arch": arch,
        "grid": list(grid),
        "norm": train_set.norm.summary or {"mean": train_set.norm.mean, "std": train_set.norm.std},
        "train": settings_dict(settings),
        "seed": settings.seed,
        "torch": torch.__version__,
        "device": str(dev),
        "split_sha256": split_sha,
        "pretrained": pretrained,
        "n_train": len(train_set),
        "n_val": len(val_set),
        "n_train_male": n_male,
        "n_train_female": len(train_set) - n_male,
        "best_epoch": result.best_epoch,
        "best_val_auc": None if np.isnan(result.best_val_auc) else result.best_val_auc,
        "epochs_run": len(result.history),
        "stopped_early": result.stopped_early,
    }
    save_atomic({"state_dict": result.best_state, **meta, "normaliser": train_set.norm.state()}, out_best)
    with atomic_path(out_history) as tmp:
        Path(tmp).write_text("".join(json.dumps(r) + "\n" for r in result.history))
    with atomic_path(out_hparams) as tmp:
        Path(tmp).write_text(json.dumps(meta, indent=2) + "\n")
    clear_checkpoints(checkpoint_dir)
    log.info("%s: best validation AUC %.3f at epoch %d", model_name, result.best_val_auc, result.best_epoch)
    return result
