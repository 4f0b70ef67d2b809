"""How many models must a region drive? The union over models at each ``occlusion.union_min_models``; prints a table.

For each finished run directory (its ``results/occlusion/{model}/{metric}/regions.tsv`` of every model and the
simulation's ``results/truth/planted_regions.tsv``) and each metric, the region-level union over the run's models
is recomputed with u = 1 (Simes over models, the default), 2, ..., k (every model) at BH-FDR, and each set is
checked against the planted regions: found, precision, recall, the spurious and the missed regions. Nothing is
retrained: this reads the per-model Wilcoxon tables the run already wrote (`dmriscope.stats.union_statistics`).

What to read from it: a spurious region that one model leans on (a planted region's neighbour, README
"Cross-validation and seed ensembles") leaves the union at u = 2; a planted region that only one model resolves is
lost with it. On a null cohort every u should flag (almost) nothing.

Usage::

    .venv/bin/python benchmarks/union_min_models.py runs/default runs/kfold-seeds3
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import pandas as pd

from dmriscope.stats import read_tsv, significant_regions, union_statistics
from dmriscope.truth import planted_sex_regions, precision_recall, region_ids


def region_tables(run: Path) -> dict[str, dict[str, pd.DataFrame]]:
    """metric -> model -> that model's regions.tsv, for every model directory of the run but the union's."""
    tables: dict[str, dict[str, pd.DataFrame]] = {}
    for path in sorted(run.glob("results/occlusion/*/*/regions.tsv")):
        model, metric = path.parts[-3], path.parts[-2]
        if model != "union":
            tables.setdefault(metric, {})[model] = read_tsv(path, required=("region", "name", "p_raw"))
    if not tables:
        raise SystemExit(f"{run}: no results/occlusion/{{model}}/{{metric}}/regions.tsv")
    return tables


def union_rows(run: Path, criterion: str) -> list[dict]:
    """One row per metric and u: the union's significant set at `criterion` against the planted regions."""
    tables = region_tables(run)
    planted = planted_sex_regions(str(run / "results/truth/planted_regions.tsv"))
    rows = []
    for metric, per_model in sorted(tables.items()):
        for u in range(1, len(per_model) + 1):
            found = set(significant_regions(union_statistics(per_model, min_models=u), criterion))
            scores = precision_recall(planted, found)
            rows.append(
                {
                    "run": run.name,
                    "metric": metric,
                    "models": len(per_model),
                    "u": u,
                    "found": scores["n_significant"],
                    "precision": scores["precision"],
                    "recall": scores["recall"],
                    "spurious": region_ids(found - planted),
                    "missed": region_ids(planted - found),
                }
            )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("runs", nargs="+", type=Path, help="finished run directories")
    parser.add_argument("--criterion", default="fdr", choices=["raw", "fdr", "holm"])
    args = parser.parse_args()
    rows = [row for run in args.runs for row in union_rows(run, args.criterion)]
    table = pd.DataFrame(rows)
    for column in ("precision", "recall"):
        table[column] = [("-" if math.isnan(v) else f"{v:.3f}") for v in table[column]]
    print(table.to_markdown(index=False, disable_numparse=True))


if __name__ == "__main__":
    main()
