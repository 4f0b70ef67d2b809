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
from dmriscope.checkpoints import load_resume_state, save_atomic
from dmriscope.device import autocast, pick_device
from dmriscope.io import progress
from dmriscope.optim import BalancedLoss, adamw, warmup_cosine_schedule
from dmriscope.train_settings import TrainSettings

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
    """P(positive) (N,), labels (N,) in dataset order, and the mean loss under ``criterion`` (nan without one)."""
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
    validation set such a model can win on noise (seen on a null cohort: README, "Planted truth"). The last epoch is
    always a candidate.
    """
    return min(settings.warmup_epochs, settings.epochs - 1)


@dataclass
class _Selection:
    """Model selection and early-stopping state: the history, the best epoch so far and its weights. Saved in every
    epoch's checkpoint, so a resumed run selects exactly as an uninterrupted one."""

    history: list[dict]
    best: dict
    bad_epochs: int
    best_state: dict[str, torch.Tensor]

    def update(self, model: nn.Module, epoch: int, val_auc: float, val_loss: float, first_candidate: int) -> None:
        """After epoch ``epoch`` (0-based): keep its weights if they win; warm-up epochs are not selectable, and
        patience does not run in them. Without a defined validation AUC yet (one class), keep the latest."""
        if epoch >= first_candidate:
            if _is_better(val_auc, val_loss, self.best):
                self.best, self.bad_epochs = {"epoch": epoch + 1, "auc": val_auc, "loss": val_loss}, 0
                self.best_state = snapshot(model)
            else:
                self.bad_epochs += 1
        if self.best["epoch"] < 0:
            self.best_state = snapshot(model)


def _optimisation(model: nn.Module, settings: TrainSettings, n_train: int) -> tuple[Any, Any, bool]:
    """AdamW, its per-step warm-up + cosine schedule, and whether to drop a last batch of one (BatchNorm)."""
    optimizer = adamw(model, settings.lr, settings.weight_decay)
    drop_last = n_train > settings.batch_size and n_train % settings.batch_size == 1
    steps = n_train // settings.batch_size if drop_last else -(-n_train // settings.batch_size)
    scheduler = warmup_cosine_schedule(
        optimizer, settings.warmup_epochs * steps, settings.epochs * steps, settings.min_lr_ratio
    )
    return optimizer, scheduler, drop_last


def _start(model: nn.Module, optimizer: Any, scheduler: Any, checkpoint_dir: Path, run_id: str) -> _Selection:
    """A fresh selection state, or the one of ``checkpoint_dir/last.pt`` (weights, optimiser and scheduler
    restored) when it carries the same ``run_id``."""
    resume = load_resume_state(checkpoint_dir, run_id)
    if resume is None:
        return _Selection([], {"epoch": -1, "auc": -np.inf, "loss": np.inf}, 0, snapshot(model))
    model.load_state_dict(resume["model"])
    optimizer.load_state_dict(resume["optimizer"])
    scheduler.load_state_dict(resume["scheduler"])
    log.info("resuming from %s after epoch %d", checkpoint_dir / "last.pt", len(resume["history"]))
    return _Selection(resume["history"], resume["best"], resume["bad_epochs"], resume["best_state"])


@dataclass
class _Loop:
    """What every epoch of one run uses: the model and its loss, optimiser and schedule, on one device."""

    model: nn.Module
    criterion: nn.Module
    optimizer: Any
    scheduler: Any
    device: torch.device
    settings: TrainSettings
    drop_last: bool
    occluder: RegionOccluder | None

    def epoch(self, train_set: Dataset, val_set: Dataset, epoch: int) -> tuple[dict, float, float]:
        """Train epoch ``epoch`` (0-based; its RNGs seeded from it) and validate: (record, val AUC, val loss)."""
        t0, settings = time.perf_counter(), self.settings
        torch.manual_seed(epoch_seed(settings.seed, epoch))
        generator = torch.Generator().manual_seed(epoch_seed(settings.seed, epoch))
        loader = DataLoader(
            train_set,
            batch_size=settings.batch_size,
            shuffle=True,
            generator=generator,
            num_workers=settings.num_workers,
            drop_last=self.drop_last,
        )
        lr = self.optimizer.param_groups[0]["lr"]
        train_loss = train_one_epoch(
            self.model, loader, self.criterion, self.optimizer, self.scheduler, self.device, settings, generator,
            self.occluder,
        )  # fmt: skip
        p_val, y_val, val_loss = predict(self.model, val_set, self.device, settings.batch_size, self.criterion)
        val_auc = safe_auc(y_val, p_val)
        record = {
            "epoch": epoch + 1,
            "train_loss": train_loss,
            "val_loss": val_loss,
            "val_auc": None if np.isnan(val_auc) else val_auc,
            "lr": lr,
            "seconds": round(time.perf_counter() - t0, 3),
        }
        return record, val_auc, val_loss

    def save(self, selection: _Selection, run_id: str, path: Path) -> None:
        """One file, written atomically, holds everything a resume needs: no crash leaves a half-updated pair."""
        state = {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
        }
        save_atomic({"fingerprint": run_id, **state, **vars(selection)}, path)


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
    (x (1, S, H, W), y) with y = 1 for the positive class and must expose ``labels`` (N,). ``on_epoch_end(record)``
    runs after each epoch's checkpoint is written. ``occluder``: the region-occlusion augmentation
    (``settings.augment_occlude``).
    """
    device = device or pick_device()
    checkpoint_dir = Path(checkpoint_dir)
    model.to(device)
    labels = np.asarray(train_set.labels)
    criterion = BalancedLoss(int((labels == 0).sum()), int((labels == 1).sum())).to(device)
    optimizer, scheduler, drop_last = _optimisation(model, settings, len(train_set))
    loop = _Loop(model, criterion, optimizer, scheduler, device, settings, drop_last, occluder)
    selection = _start(model, optimizer, scheduler, checkpoint_dir, run_id)
    stopped = selection.bad_epochs >= settings.patience
    epoch = len(selection.history)
    while not stopped and epoch < settings.epochs:
        record, val_auc, val_loss = loop.epoch(train_set, val_set, epoch)
        selection.history.append(record)
        selection.update(model, epoch, val_auc, val_loss, selection_start(settings))
        loop.save(selection, run_id, checkpoint_dir / "last.pt")
        log.info("epoch %s", json.dumps(record))
        if on_epoch_end is not None:
            on_epoch_end(record)
        stopped = selection.bad_epochs >= settings.patience
        if stopped:
            log.info(
                "early stop after epoch %d: no better validation AUC for %d epochs", epoch + 1, selection.bad_epochs
            )
        epoch += 1
    best_auc = float(selection.best["auc"]) if np.isfinite(selection.best["auc"]) else float("nan")
    return FitResult(selection.history, selection.best_state, selection.best["epoch"], best_auc, stopped)
