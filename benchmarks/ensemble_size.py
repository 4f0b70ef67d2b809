"""What each extra training seed buys: a finished run's seed ensembles of every size, recomputed; prints a table.

For each run directory, model and metric with more than one seed (``results/models/{model}/{metric}/fold*/seed*/
predictions.tsv``), the ensemble of k seeds (k = 1 .. all) is pooled exactly as `summarise_model` pools the full
one (`dmriscope.ensemble.pool_predictions`: P(positive) averaged over a fold's seeds, folds concatenated) and scored
by its AUC over all tested subjects. Per k: the AUC of the first k seeds (what ``train.seeds: [0, .., k-1]`` would
report) and min / mean / max over every k-subset of the seeds (at most ``--max-subsets``, drawn with a fixed seed).
Nothing is retrained.

What to read from it: the mean over subsets against k is the ensemble's learning curve; where it still rises from
k - 1 to k, more seeds would still pay, and its spread at a given k says how much the choice of seeds decides.

Usage::

    .venv/bin/python benchmarks/ensemble_size.py runs/cohort-d --models cnn2d cnn3d --metrics FA
"""

from __future__ import annotations

import argparse
import itertools
import random
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from dmriscope.config import METRICS, WORKFLOW_MODELS
from dmriscope.ensemble import pool_predictions, read_runs
from dmriscope.scores import classification_metrics


def run_tables(run: Path, model: str, metric: str) -> dict[tuple[str, str], pd.DataFrame]:
    """(fold, seed) -> that run's predictions.tsv; every fold must hold the same seeds."""
    base = run / "results/models" / model / metric
    paths = sorted(base.glob("fold*/seed*/predictions.tsv"))
    runs = [(p.parts[-3].removeprefix("fold"), p.parts[-2].removeprefix("seed")) for p in paths]
    seeds_per_fold = {fold: {s for f, s in runs if f == fold} for fold, _ in runs}
    if len({frozenset(s) for s in seeds_per_fold.values()}) > 1:
        raise SystemExit(f"{base}: the folds hold different seeds ({seeds_per_fold})")
    return read_runs(paths, runs, str(base))


def ensemble_auc(tables: dict[tuple[str, str], pd.DataFrame], seeds: Sequence[str]) -> float:
    """AUC of the ensemble of ``seeds`` (each fold's mean P(positive) over them), folds pooled."""
    pooled = pool_predictions({run: t for run, t in tables.items() if run[1] in seeds})
    return classification_metrics(pooled["label"], pooled["p_positive"])["auc"]


def size_rows(tables: dict[tuple[str, str], pd.DataFrame], max_subsets: int, seed: int = 0) -> list[dict]:
    """One row per ensemble size k: the first k seeds' AUC and min / mean / max over (up to max_subsets) k-subsets."""
    seeds = sorted({s for _, s in tables}, key=int)
    rng = random.Random(seed)
    rows = []
    for k in range(1, len(seeds) + 1):
        subsets = list(itertools.combinations(seeds, k))
        if len(subsets) > max_subsets:
            subsets = rng.sample(subsets, max_subsets)
        aucs = [ensemble_auc(tables, subset) for subset in subsets]
        rows.append(
            {
                "k": k,
                "first_k": ensemble_auc(tables, seeds[:k]),
                "subsets": len(aucs),
                "min": min(aucs),
                "mean": float(np.mean(aucs)),
                "max": max(aucs),
            }
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("runs", nargs="+", type=Path, help="finished run directories")
    parser.add_argument("--models", nargs="+", default=list(WORKFLOW_MODELS))
    parser.add_argument("--metrics", nargs="+", default=list(METRICS))
    parser.add_argument("--max-subsets", type=int, default=50)
    args = parser.parse_args()
    rows = []
    for run, model, metric in itertools.product(args.runs, args.models, args.metrics):
        tables = run_tables(run, model, metric)  # {} where the run has no such model x metric
        if len({s for _, s in tables}) > 1:
            rows += [
                {"run": run.name, "model": model, "metric": metric, **r} for r in size_rows(tables, args.max_subsets)
            ]
    if not rows:
        raise SystemExit("no model x metric with more than one seed in " + ", ".join(map(str, args.runs)))
    print(pd.DataFrame(rows).to_markdown(index=False, floatfmt=".3f"))


if __name__ == "__main__":
    main()
