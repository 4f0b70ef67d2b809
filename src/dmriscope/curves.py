"""A model's figures: the ROC curve of its test predictions and its training history (matplotlib, torch-free)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure
from sklearn.metrics import roc_curve

from dmriscope.io import atomic_path


def plot_roc(
    predictions: pd.DataFrame, summary: dict, title: str, path: str | Path, names: tuple[str, str] = ("male", "female")
) -> None:
    """ROC curve of the test predictions with the AUC and its CI in the legend (``names``: positive, negative)."""
    fpr, tpr, _ = roc_curve(predictions["label"], predictions["p_positive"])
    fig = Figure(figsize=(4, 4), dpi=120)
    ax = fig.subplots()
    ci = summary["auc_ci"]
    label = "AUC undefined (one class)" if summary["auc"] is None else f"AUC {summary['auc']:.3f}"
    label += f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else ""
    ax.plot(fpr, tpr, lw=2, label=label)
    ax.plot([0, 1], [0, 1], ls="--", c="grey", lw=1)
    pos, neg = names
    ax.set(xlabel=f"false positive rate ({neg} called {pos})", ylabel=f"true positive rate ({pos})", title=title)
    ax.legend(loc="lower right", fontsize=8)
    _save(fig, path)


def plot_history(runs: Sequence[tuple[str, Sequence[dict], int | None]], title: str, path: str | Path) -> None:
    """Training and validation loss (left) and validation AUC (right) per epoch, one line pair per run
    (label, history, selected epoch); the selected epochs dotted."""
    fig = Figure(figsize=(8, 3.2), dpi=120)
    left, right = fig.subplots(1, 2)
    single = len(runs) == 1
    for k, (label, history, best_epoch) in enumerate(runs):
        frame = pd.DataFrame(history)
        colour, width = (None, 1.5) if single else (f"C{k % 10}", 0.8)
        tag = "" if single else f" {label}"
        left.plot(frame["epoch"], frame["train_loss"], c=colour or "C0", lw=width, label=f"train{tag}")
        left.plot(frame["epoch"], frame["val_loss"], c=colour or "C1", lw=width, ls="--", label=f"validation{tag}")
        right.plot(frame["epoch"], frame["val_auc"].astype(float), c=colour or "C2", lw=width, label=label)
        if best_epoch is not None and best_epoch > 0:
            for ax in (left, right):
                ax.axvline(best_epoch, ls=":", c=colour or "grey", lw=1)
    left.set(xlabel="epoch", ylabel="class-weighted loss")
    left.legend(fontsize=6 if not single else 8, ncol=1 if single else 2)
    right.set(xlabel="epoch", ylabel="validation AUC", ylim=(0, 1))
    for ax in (left, right):
        ax.xaxis.get_major_locator().set_params(integer=True)
    fig.suptitle(title, fontsize=10)
    _save(fig, path)


def _save(fig: Figure, path: str | Path) -> None:
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
