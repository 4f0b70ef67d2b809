"""The runs of one model x metric pooled into what is reported: folds concatenated, seeds averaged.

A run is one training of a model on a metric in one fold (the holdout split is fold 0) with one seed. The reported
prediction of a subject is the mean P(positive) over the seeds of the fold that tested it (a seed ensemble); each
subject is tested by exactly one fold. The ensemble's occlusion delta p is the mean of the seeds' delta p, exactly,
since P_ensemble(occluded) - P_ensemble(intact) = mean over seeds of (P_s(occluded) - P_s(intact)).

`summarise_runs` adds the spread to the bootstrap CI of `dmriscope.scores.summarise`: the AUC of every fold (its
test part, seeds pooled) and of every seed (all folds, that seed alone).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from dmriscope.curves import plot_history, plot_roc
from dmriscope.io import InputError, atomic_path, read_history
from dmriscope.label import Label
from dmriscope.scores import PREDICTION_COLUMNS, classification_metrics, write_results
from dmriscope.size_baseline import scored

log = logging.getLogger(__name__)
Run = tuple[str, str]  # (fold, seed)
DELTA_COLUMNS = ["p_before", "p_after", "delta_p"]


def read_runs(paths: Sequence[str | Path], runs: Sequence[Run], what: str) -> dict[Run, pd.DataFrame]:
    """Tables given in ``runs`` order (fold-major, as `rules/common.smk`'s ``replicates`` expands them)."""
    if len(paths) != len(runs):
        raise InputError(f"{what}: {len(paths)} files for {len(runs)} fold x seed runs")
    out = {}
    for run, path in zip(runs, paths, strict=True):
        try:
            out[run] = pd.read_csv(path, sep="\t", dtype={"subject": str, "age_bin": str})
        except (OSError, pd.errors.ParserError) as exc:
            raise InputError(f"{path}: cannot read ({exc})") from None
        if "p_male" in out[run].columns:  # predictions of a dmriscope before the label was configurable
            raise InputError(f"{path}: has p_male, not p_positive (an older dmriscope wrote it); rerun its rule")
    return out


def _mean_over_seeds(
    tables: Sequence[pd.DataFrame], keys: Sequence[str], columns: Sequence[str], fold: str
) -> pd.DataFrame:
    """The first table with ``columns`` replaced by their mean over ``tables``; every table must list the same keys."""
    first = tables[0]
    for other in tables[1:]:
        if not first[list(keys)].equals(other[list(keys)]):
            raise InputError(f"fold {fold}: the seeds' tables list different {'/'.join(keys)}")
    out = first.copy()
    if len(tables) > 1:
        out[list(columns)] = np.mean([t[list(columns)].to_numpy(float) for t in tables], axis=0)
    return out


def pool(tables: dict[Run, pd.DataFrame], keys: Sequence[str], columns: Sequence[str]) -> pd.DataFrame:
    """Seeds averaged within each fold, folds concatenated (with a ``fold`` column), stably sorted by subject."""
    folds = sorted({fold for fold, _ in tables}, key=int)
    parts = []
    for fold in folds:
        runs = [tables[r] for r in sorted(tables, key=lambda r: int(r[1])) if r[0] == fold]
        parts.append(_mean_over_seeds(runs, keys, columns, fold).assign(fold=int(fold)))
    pooled = pd.concat(parts, ignore_index=True)
    return pooled.sort_values("subject", kind="mergesort").reset_index(drop=True)


def pool_predictions(tables: dict[Run, pd.DataFrame]) -> pd.DataFrame:
    """The reported predictions: one row per subject, P(positive) averaged over its fold's seeds."""
    pooled = pool(tables, ["subject", "label"], ["p_positive"])
    twice = pooled.loc[pooled["subject"].duplicated(), "subject"]
    if len(twice):
        raise InputError(f"subject {twice.iloc[0]} tested twice")
    pooled["p_negative"] = 1.0 - pooled["p_positive"]
    return pooled[[*PREDICTION_COLUMNS, "fold"]]


def pool_delta_p(tables: dict[Run, pd.DataFrame]) -> pd.DataFrame:
    """The ensemble's occlusion table: one row per subject x region, p and delta p averaged over the seeds."""
    pooled = pool(tables, ["subject", "label", "region"], DELTA_COLUMNS)
    return pooled.drop(columns="fold")


def spread(tables: dict[Run, pd.DataFrame], pooled: pd.DataFrame) -> dict:
    """Per-fold AUC (seeds pooled) and per-seed AUC (folds pooled), with their mean / SD and min / median / max."""
    fold_auc = [
        classification_metrics(f["label"], f["p_positive"])["auc"] for _, f in pooled.groupby("fold", sort=True)
    ]
    seeds = sorted({seed for _, seed in tables}, key=int)
    seed_auc = []
    for seed in seeds:
        part = pd.concat([t for (_, s), t in tables.items() if s == seed])
        seed_auc.append(classification_metrics(part["label"], part["p_positive"])["auc"])
    defined = [a for a in fold_auc if a is not None]
    return {
        "folds": len(fold_auc),
        "fold_auc": fold_auc,
        "fold_auc_mean": float(np.mean(defined)) if defined else None,
        "fold_auc_sd": float(np.std(defined, ddof=1)) if len(defined) > 1 else None,
        "seeds": [int(s) for s in seeds],
        "seed_auc": seed_auc,
        "seed_auc_min": min(seed_auc) if None not in seed_auc else None,
        "seed_auc_median": float(np.median(seed_auc)) if None not in seed_auc else None,
        "seed_auc_max": max(seed_auc) if None not in seed_auc else None,
    }


def run_records(runs: Sequence[Run], hparams: Sequence[str | Path]) -> list[dict]:
    """Per run: fold, seed, selected epoch and its validation AUC (from hparams.json)."""
    records = []
    for (fold, seed), path in zip(runs, hparams, strict=True):
        meta = json.loads(Path(path).read_text())
        records.append(
            {"fold": int(fold), "seed": int(seed), "best_epoch": meta["best_epoch"], "val_auc": meta["best_val_auc"]}
        )
    return records


def summarise_runs(
    *,
    model: str,
    metric: str,
    runs: Sequence[Run],
    predictions: Sequence[str],
    hparams: Sequence[str],
    histories: Sequence[str],
    volumes: str | None = None,
    out_predictions: str,
    out_metrics: str,
    out_roc: str,
    out_curve: str,
    n_resamples: int = 2000,
    seed: int = 0,
    level: float = 0.95,
    label: Mapping | None = None,
) -> dict:
    """Rule summarise_model: pool the runs' test predictions; write predictions.tsv, metrics.json (with the AUC among
    volume-matched pairs when ``volumes`` is given), the ROC and the training curves of every run."""
    group = Label.from_config(label)
    tables = read_runs(predictions, runs, f"{model} {metric} predictions")
    pooled = pool_predictions(tables)
    summary = scored(
        pooled, volumes=volumes, n_resamples=n_resamples, seed=seed, level=level, label=group, model=model,
        **spread(tables, pooled), runs=run_records(runs, hparams),
    )  # fmt: skip
    write_results(pooled, summary, out_predictions, out_metrics)
    plot_roc(pooled, summary, f"{model} ({metric}): test ROC", out_roc, group.names)
    curves = [
        (f"fold {r['fold']} seed {r['seed']}", read_history(h), r["best_epoch"])
        for r, h in zip(summary["runs"], histories, strict=True)
    ]
    plot_history(curves, f"{model} ({metric}): training (selected epoch dotted)", out_curve)
    log.info(
        "%s %s: test AUC %s, CI %s, %d folds x %d seeds",
        model,
        metric,
        summary["auc"],
        summary["auc_ci"],
        summary["folds"],
        len(summary["seeds"]),
    )
    return summary


def pool_occlusion_files(*, runs: Sequence[Run], delta_p: Sequence[str], out: str) -> pd.DataFrame:
    """Rule pool_occlusion: the runs' delta_p.tsv pooled into the ensemble's, every subject by its own fold."""
    frame = pool_delta_p(read_runs(delta_p, runs, "occlusion"))
    with atomic_path(out) as tmp:
        frame.to_csv(tmp, sep="\t", index=False, float_format="%.9g")
    log.info(
        "%s: %d subjects x %d regions from %d runs",
        out,
        frame["subject"].nunique(),
        frame["region"].nunique(),
        len(runs),
    )
    return frame
