"""The pretraining table: per metric and MAE stage, the validation masked-patch loss against the population mean."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from dmriscope.io import InputError
from dmriscope.render.tables import write_table

COLUMNS = ["metric", "stage", "epochs", "train_loss", "val_loss", "val_baseline", "val_ratio", "val_ratio_start"]


def read_mae_history(path: str | os.PathLike) -> list[dict]:
    """The rows of a mae2d/mae3d history JSONL (epoch 0 = before training, present when validation was scored)."""
    try:
        return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
    except (OSError, json.JSONDecodeError) as exc:
        raise InputError(f"{path}: cannot read the pretraining history ({exc})") from None


def pretraining_rows(history: Sequence[dict], metric: str, stage: str) -> dict:
    """One table row: the last epoch's training and validation losses, the ratio to the population mean at the
    end and before training (for the 3D stage: the 2D encoder's transfer)."""
    trained = [r for r in history if r.get("loss") is not None]
    if not trained:
        raise InputError(f"{metric} {stage}: the pretraining history has no trained epoch")
    last, first = trained[-1], history[0]
    return {
        "metric": metric,
        "stage": stage,
        "epochs": last["epoch"],
        "train_loss": last["loss"],
        "val_loss": last.get("val_loss"),
        "val_baseline": last.get("val_baseline"),
        "val_ratio": last.get("val_ratio"),
        "val_ratio_start": first.get("val_ratio") if first.get("epoch") == 0 else None,
    }


def render_pretraining_table(
    *,
    mae2d: Sequence[str],
    mae3d: Sequence[str],
    metrics: Sequence[str],
    folds: Sequence[str] = ("0",),
    tsv: str,
    md: str,
    html: str,
) -> None:
    """Rule render_pretraining_table: histories given metric-major, then per fold, for both stages; a ``fold``
    column when the split has more than one."""
    keys = [(metric, fold) for metric in metrics for fold in folds]
    if not len(mae2d) == len(mae3d) == len(keys):
        raise InputError(f"pretraining table: {len(mae2d)}/{len(mae3d)} histories for {len(keys)} metric x fold pairs")
    rows = []
    for (metric, fold), h2, h3 in zip(keys, mae2d, mae3d, strict=True):
        for stage, path in (("2D slabs", h2), ("3D volumes", h3)):
            rows.append({**pretraining_rows(read_mae_history(path), metric, stage), "fold": int(fold)})
    columns = COLUMNS if len(folds) == 1 else [COLUMNS[0], "fold", *COLUMNS[1:]]
    title = (
        "MAE pretraining: masked-patch MSE on validation subjects against the population-mean predictor "
        "(val_ratio < 1: the MAE infers masked patches from visible ones)"
    )
    write_table(pd.DataFrame(rows)[columns], tsv, md, title, html)
