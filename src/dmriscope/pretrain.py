"""Masked-autoencoder pretraining of the ViT encoder: a 2D MAE on sagittal slabs, then a 3D MAE on volumes.

Stage 1 (`pretrain_mae2d`): every training subject's volume is cut into S/s slabs of s consecutive sagittal slices
(s = the ViT patch depth); a slab is an s-channel 2D image, and a 2D ViT encoder (see
:func:`dmriscope.models.vit.build_slab_encoder`) is pretrained on them with a MAE. Stage 2 (`pretrain_mae3d`): the
2D encoder initialises the 3D encoder (patch embedding reshaped, positional table extended along the slab axis, see
:mod:`dmriscope.models.vit`), the decoder starts fresh, and a 3D MAE is pretrained on the volumes. Only subjects in
the training set are used. Inputs are normalised by the tensor store's training statistics
(:class:`dmriscope.normalise.Normaliser`: training-set statistics, 0 outside the brain mask).

Optimisation: AdamW (betas 0.9, 0.95, as MAE; no weight decay on biases, norms, tokens and positional tables), a
per-step linear warm-up then cosine decay to 0; CUDA with bf16 autocast when present, else CPU in float32. Runs are
seeded and deterministic on CPU. Every epoch appends one JSON line (epoch, loss, lr, seconds) to the history.
Checkpoints (``torch.save``, readable with ``weights_only=True``) hold kind ("mae2d"/"mae3d"), model (the MAE state
dict: ``encoder.*`` + decoder), vit and pretrain hyper-parameters, grid, seed and history.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from dmriscope.device import autocast, pick_device
from dmriscope.io import InputError, atomic_path, progress
from dmriscope.models.mae import MaskedAutoencoder
from dmriscope.models.vit import ViTEncoder, build_slab_encoder, load_encoder_state
from dmriscope.optim import adamw, warmup_cosine_schedule
from dmriscope.pretrain_eval import Pair, masked_loss_vs_mean, mean_target, pairs, population_mean
from dmriscope.pretrain_figures import plot_loss, plot_reconstruction
from dmriscope.tensors import Normaliser, VolumeDataset, read_index

log = logging.getLogger(__name__)

ENCODER_KEYS = ("dim", "depth", "heads", "mlp_dim", "dropout", "checkpointing")
NO_DECAY = ("cls_token", "cls_pos", "mask_token", "position_embeddings")


class SlabDataset(VolumeDataset):
    """Slabs of ``slab`` consecutive sagittal slices: item i -> (x float32 (slab, H, W), label), normalised.

    Item ``i`` is slab ``i % (S / slab)`` of subject row ``i // (S / slab)``; only that slab is read from the store.
    """

    def __init__(self, npy: str | Path, index: Any, norm: Normaliser, brain_mask: np.ndarray, slab: int) -> None:
        super().__init__(npy, index, norm, brain_mask)
        if self.brain_mask.shape[0] % slab:
            raise InputError(f"{npy}: {self.brain_mask.shape[0]} slices are not divisible by the slab depth {slab}")
        self.slab = slab
        self.n_slabs = self.brain_mask.shape[0] // slab

    def __len__(self) -> int:
        return len(self.rows) * self.n_slabs

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        r, k = divmod(i, self.n_slabs)
        part = slice(k * self.slab, (k + 1) * self.slab)
        x = self.normalise(self.store[self.rows[r], part], (part,), self.covariate(r))
        return torch.from_numpy(x), torch.tensor(self.labels[r])


def open_store(
    tensors: str | os.PathLike,
    index: str | os.PathLike,
    norm: str | os.PathLike,
    brain_mask: str | os.PathLike,
    norm_voxels: str | os.PathLike | None = None,
) -> tuple[Any, Normaliser, np.ndarray, tuple[int, int, int]]:
    """The index table, normaliser (``norm_voxels``: its voxel statistics, in voxel mode), brain mask and grid
    (S, H, W) of a tensor store, checked against each other."""
    for path in (tensors, index, norm, brain_mask):
        if not Path(path).exists():
            raise InputError(f"{path}: file not found")
    store = np.load(tensors, mmap_mode="r")
    if store.ndim != 4:
        raise InputError(f"{tensors}: expected a 4D (N, S, H, W) array, got shape {store.shape}")
    table = read_index(index)
    if len(table) and (table["row"].min() < 0 or table["row"].max() >= store.shape[0]):
        raise InputError(f"{index}: row numbers outside the store's {store.shape[0]} rows")
    mask = np.load(brain_mask).astype(bool)
    if mask.shape != store.shape[1:]:
        raise InputError(f"{brain_mask}: shape {mask.shape} differs from the store grid {store.shape[1:]}")
    normaliser = Normaliser.from_files(norm, norm_voxels)
    if isinstance(normaliser.mean, np.ndarray) and normaliser.mean.shape != mask.shape:
        raise InputError(f"{norm}: voxel statistics of grid {normaliser.mean.shape} differ from {mask.shape}")
    return table, normaliser, mask, tuple(int(v) for v in store.shape[1:])  # type: ignore[return-value]


def subset(table: Any, sets: tuple[str, ...], index_path: str | os.PathLike) -> Any:
    """Rows of the index whose set is in ``sets``; ``InputError`` naming the index when there are none."""
    chosen = table[table["set"].isin(list(sets))]
    if chosen.empty:
        raise InputError(f"{index_path}: no subject in set(s) {list(sets)}")
    return chosen


def encoder_hparams(vit: Mapping[str, Any]) -> dict[str, Any]:
    """The ViTEncoder keyword arguments from a ``models.vit`` config section (patch handled separately)."""
    return {k: vit[k] for k in ENCODER_KEYS if k in vit}


def build_mae(encoder: ViTEncoder, pretrain: Mapping[str, Any]) -> MaskedAutoencoder:
    """A MAE around ``encoder`` with the decoder and masking settings of the ``pretrain`` config section."""
    keys = ("decoder_dim", "decoder_depth", "decoder_heads", "mask_ratio", "norm_pix_loss")
    return MaskedAutoencoder(encoder, **{k: pretrain[k] for k in keys if k in pretrain})


def _mae_epoch(
    mae: MaskedAutoencoder, loader: DataLoader, optimizer: Any, schedule: Any, device: torch.device, desc: str
) -> tuple[float, float]:
    """One pass over ``loader``: (mean masked-patch MSE over its samples, the learning rate of its last step)."""
    loss_sum, n_seen = 0.0, 0
    for x, _ in progress(loader, desc=desc):
        x = x.to(device, non_blocking=True)
        with autocast(device):
            loss, _, _ = mae(x)
        if not torch.isfinite(loss):
            raise RuntimeError(f"{desc}: loss is {loss.item()}; lower pretrain lr")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        lr = optimizer.param_groups[0]["lr"]
        optimizer.step()
        schedule.step()
        loss_sum += loss.item() * len(x)
        n_seen += len(x)
    return loss_sum / n_seen, lr


def train_mae(
    mae: MaskedAutoencoder,
    dataset: Dataset,
    stage: Mapping[str, Any],
    weight_decay: float,
    seed: int,
    history_path: str | os.PathLike,
    device: torch.device,
    desc: str = "mae",
    val_pairs: Sequence[Pair] = (),
) -> list[dict[str, float]]:
    """Train ``mae`` on ``dataset``; write one JSON line per epoch to ``history_path`` (atomically, at the end).

    Args:
        stage: epochs, batch_size, lr (peak), warmup_epochs.
        weight_decay: AdamW decoupled weight decay. seed: seeds the shuffling and the masks.
        val_pairs: held-out (input, population mean) pairs scored after every epoch with the same seeded masks
            (`dmriscope.pretrain_eval.masked_loss_vs_mean`); none = no validation columns.
    Returns:
        the history rows: epoch (1-based), loss (mean masked-patch MSE over the epoch's samples), lr (of the
        epoch's last step), seconds; with ``val_pairs`` also val_loss, val_baseline (the population-mean
        predictor's loss) and val_ratio = val_loss / val_baseline.
    """
    torch.manual_seed(seed)
    loader = DataLoader(
        dataset,
        batch_size=min(int(stage["batch_size"]), len(dataset)),
        shuffle=True,
        generator=torch.Generator().manual_seed(seed),
        pin_memory=device.type == "cuda",
    )
    epochs = int(stage["epochs"])
    optimizer = adamw(mae, float(stage["lr"]), weight_decay, betas=(0.9, 0.95), no_decay_names=NO_DECAY)
    total, warm = epochs * len(loader), int(stage["warmup_epochs"]) * len(loader)
    schedule = warmup_cosine_schedule(optimizer, warm, total, 0.0)
    mae.to(device).train()
    rows: list[dict[str, float]] = []
    if val_pairs:  # epoch 0: the initialisation (random, or the 2D encoder for the 3D stage) against the baseline
        rows.append(
            {"epoch": 0, "loss": None, "lr": 0.0, "seconds": 0.0, **validation_row(mae, val_pairs, seed, device)}
        )
        log.info("%s before training: %s", desc, json.dumps(rows[0]))
    with atomic_path(history_path) as tmp, open(tmp, "w") as history:
        for row in rows:
            history.write(json.dumps(row) + "\n")
        for epoch in range(1, epochs + 1):
            start = time.perf_counter()
            loss, lr = _mae_epoch(mae, loader, optimizer, schedule, device, f"{desc} epoch {epoch}/{epochs}")
            row = {"epoch": epoch, "loss": loss, "lr": lr, "seconds": time.perf_counter() - start}
            if val_pairs:
                row.update(validation_row(mae, val_pairs, seed, device))  # leaves mae in training mode
            history.write(json.dumps(row) + "\n")
            history.flush()
            rows.append(row)
            log.info("%s epoch %d/%d: %s", desc, epoch, epochs, json.dumps(row))
    return rows


def validation_row(mae: MaskedAutoencoder, pairs: Sequence[Pair], seed: int, device: torch.device) -> dict:
    """val_loss, val_baseline and val_ratio of ``mae`` on held-out pairs (masks seeded by ``seed``)."""
    loss, baseline = masked_loss_vs_mean(mae, pairs, seed, device)
    return {"val_loss": loss, "val_baseline": baseline, "val_ratio": loss / baseline if baseline > 0 else None}


def save_checkpoint(
    path: str | os.PathLike,
    kind: str,
    mae: MaskedAutoencoder,
    vit: Mapping[str, Any],
    pretrain: Mapping[str, Any],
    grid: tuple[int, int, int],
    history: list[dict[str, float]],
) -> None:
    """Write a MAE checkpoint atomically (plain containers only, so ``torch.load(weights_only=True)`` reads it)."""
    state = {k: v.detach().cpu() for k, v in mae.state_dict().items()}
    plain = json.loads(json.dumps({"vit": dict(vit), "pretrain": dict(pretrain), "history": history}))
    ckpt = {"kind": kind, "model": state, "grid": list(grid), "seed": int(pretrain["seed"]), **plain}
    with atomic_path(path) as tmp:
        torch.save(ckpt, tmp)
    log.info("wrote %s", path)


def _open_for_pretraining(
    tensors: str, index: str, norm: str, brain_mask: str, vit: Mapping[str, Any], threads: int, norm_voxels: str | None
) -> tuple:
    """Set torch threads, open the tensor store and check that the ViT patch tiles its grid (both MAE stages)."""
    torch.set_num_threads(max(1, int(threads)))
    table, normaliser, mask, grid = open_store(tensors, index, norm, brain_mask, norm_voxels)
    patch = tuple(vit["patch"])
    check_grid_fits(grid, patch, tensors)
    return table, normaliser, mask, grid, patch


def pretraining_sets(pretrain: Mapping[str, Any]) -> tuple[str, ...]:
    """The sets whose (unlabelled) maps the MAE trains on: ``pretrain.sets``; never the test set."""
    sets = tuple(pretrain.get("sets", ("train",)))
    if "test" in sets or not sets:
        raise InputError(f"config key 'pretrain.sets': {list(sets)} must be a non-empty subset of [train, val]")
    return sets


def held_out(table: Any, sets: tuple[str, ...]) -> Any:
    """Validation rows the MAE does not train on (empty when ``sets`` includes val)."""
    return table[(table["set"] == "val") & ~table["set"].isin(list(sets))]


def _datasets(
    tensors: str, index: str, table: Any, normaliser: Normaliser, mask: np.ndarray, pretrain: Mapping[str, Any]
) -> tuple[VolumeDataset, VolumeDataset | None]:
    """The pretraining volumes and the held-out validation volumes (or None)."""
    sets = pretraining_sets(pretrain)
    volumes = VolumeDataset(tensors, subset(table, sets, index), normaliser, mask)
    val = held_out(table, sets)
    val_set = VolumeDataset(tensors, val, normaliser, mask) if len(val) else None
    return volumes, val_set


def pretrain_mae2d(
    *,
    tensors: str,
    index: str,
    norm: str,
    brain_mask: str,
    checkpoint: str,
    history: str,
    loss_png: str,
    vit: Mapping[str, Any],
    pretrain: Mapping[str, Any],
    threads: int = 1,
    norm_voxels: str | None = None,
) -> None:
    """Rule pretrain_mae2d: a 2D MAE on the sagittal slabs (s = vit patch depth) of the ``pretrain.sets`` subjects."""
    opened = _open_for_pretraining(tensors, index, norm, brain_mask, vit, threads, norm_voxels)
    table, normaliser, mask, grid, patch = opened
    volumes, val_set = _datasets(tensors, index, table, normaliser, mask, pretrain)
    slabs = SlabDataset(tensors, volumes.index, normaliser, mask, patch[0])
    target = mean_target(volumes, patch[1:], bool(pretrain.get("norm_pix_loss")), slab=patch[0])
    val_pairs = pairs(val_set, target, slab=patch[0]) if val_set is not None else []
    log.info("2D MAE: %d subjects x %d slabs of %dx%dx%d", len(slabs.rows), slabs.n_slabs, patch[0], *grid[1:])
    torch.manual_seed(int(pretrain["seed"]))
    mae = build_mae(build_slab_encoder(grid, patch, **encoder_hparams(vit)), pretrain)
    device = pick_device()
    rows = train_mae(
        mae, slabs, pretrain["mae2d"], pretrain["weight_decay"], pretrain["seed"], history, device, "mae2d", val_pairs
    )
    save_checkpoint(checkpoint, "mae2d", mae, vit, pretrain, grid, rows)
    plot_loss(rows, loss_png, "2D MAE (sagittal slabs)")


def pretrain_mae3d(
    *,
    tensors: str,
    index: str,
    norm: str,
    brain_mask: str,
    init: str,
    checkpoint: str,
    history: str,
    loss_png: str,
    figure: str,
    vit: Mapping[str, Any],
    pretrain: Mapping[str, Any],
    threads: int = 1,
    norm_voxels: str | None = None,
) -> None:
    """Rule pretrain_mae3d: a 3D MAE on the ``pretrain.sets`` volumes, encoder initialised from the 2D MAE ``init``."""
    opened = _open_for_pretraining(tensors, index, norm, brain_mask, vit, threads, norm_voxels)
    table, normaliser, mask, grid, patch = opened
    volumes, val_set = _datasets(tensors, index, table, normaliser, mask, pretrain)
    target = mean_target(volumes, patch, bool(pretrain.get("norm_pix_loss")))
    val_pairs = pairs(val_set, target) if val_set is not None else []
    torch.manual_seed(int(pretrain["seed"]))
    mae = build_mae(ViTEncoder(1, grid, patch, **encoder_hparams(vit)), pretrain)
    init_from_2d(mae.encoder, init)
    log.info("3D MAE: %d volumes, %d patches each", len(volumes), mae.encoder.n_patches)
    device = pick_device()
    rows = train_mae(
        mae, volumes, pretrain["mae3d"], pretrain["weight_decay"], pretrain["seed"], history, device, "mae3d", val_pairs
    )
    save_checkpoint(checkpoint, "mae3d", mae, vit, pretrain, grid, rows)
    plot_loss(rows, loss_png, "3D MAE (volumes)")
    shown = val_set if val_set is not None else volumes
    mean = population_mean(volumes)
    row = shown.index.iloc[0]
    plot_reconstruction(
        mae,
        shown[0][0],
        mean,
        f"sub-{row['subject']} ({row['set']})",
        figure,
        seed=int(pretrain["seed"]),
        device=device,
    )


def check_grid_fits(grid: tuple[int, int, int], patch: tuple[int, ...], tensors: str | os.PathLike) -> None:
    """``InputError`` unless the store grid is divisible by the ViT patch on every axis."""
    if len(patch) != 3 or any(g % p for g, p in zip(grid, patch)):
        raise InputError(f"{tensors}: grid {grid} is not divisible by models.vit.patch {list(patch)}")


def init_from_2d(encoder: ViTEncoder, init: str | os.PathLike) -> None:
    """Initialise a 3D encoder from a "mae2d" checkpoint (weights reshaped, positions extended)."""
    load_encoder_state(encoder, init, kinds=("mae2d",))
