"""Ground-truth check for synthetic cohorts: planted sex-effect regions vs the regions occlusion flags.

For each model x metric the set S of significant regions (BH-FDR by default) is compared with the set P of regions
where the simulation planted a sex effect (``results/truth/planted_regions.tsv``, rows with effect == "sex" and a
non-zero size): precision = |S & P| / |S| (NaN when nothing is significant), recall = |S & P| / |P| (NaN when
nothing was planted, e.g. a null cohort, where the false positives are what matters). The union of S over all
models is checked per metric in two ways: ``union_of_models`` pools each model's significant set (each at its own
FDR, so the union's false discoveries add up over models), ``union`` tests the regions once for the union
(`dmriscope.stats.union_statistics`, the DAG's ``results/occlusion/union/{metric}/regions.tsv``: Simes over models,
then the correction over regions), which controls the
FDR of the union itself.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

import pandas as pd

from dmriscope.stats import (
    UNION,
    read_tsv,
    significant_regions,
    tables_by_metric,
)

TRUTH_COLUMNS = (
    "metric",
    "model",
    "criterion",
    "n_planted",
    "n_significant",
    "true_positives",
    "false_positives",
    "false_negatives",
    "precision",
    "recall",
    "found",
    "missed",
    "spurious",
)


def planted_sex_regions(path: str, effect: str = "sex") -> set[int]:
    """Atlas indices with a planted effect of the label (``effect``: its column, sex by default), from the
    simulation's (or export_bids') planted-regions TSV."""
    table = read_tsv(path, required=("region", "effect", "size"))
    rows = table[(table["effect"].astype(str) == effect) & (table["size"].astype(float) != 0)]
    return {int(r) for r in rows["region"]}


def precision_recall(planted: Iterable[int], found: Iterable[int]) -> dict[str, float | int]:
    """Counts and rates of `found` against `planted` (sets of region indices); NaN where a rate is undefined."""
    planted, found = set(planted), set(found)
    tp = len(planted & found)
    return {
        "n_planted": len(planted),
        "n_significant": len(found),
        "true_positives": tp,
        "false_positives": len(found - planted),
        "false_negatives": len(planted - found),
        "precision": tp / len(found) if found else math.nan,
        "recall": tp / len(planted) if planted else math.nan,
    }


def region_ids(regions: Iterable[int]) -> str:
    """Sorted region indices as '3, 5, 17', or '-' for none (the truth check's found / missed / spurious)."""
    return ", ".join(str(r) for r in sorted(regions)) or "-"


def _row(metric: str, model: str, criterion: str, planted: set[int], found: set[int]) -> dict:
    return {
        "metric": metric,
        "model": model,
        "criterion": criterion,
        **precision_recall(planted, found),
        "found": region_ids(found & planted),
        "missed": region_ids(planted - found),
        "spurious": region_ids(found - planted),
    }


POOLED = "union_of_models"  # the model name of the pooled per-model significant sets


def truth_check(
    regions: Mapping[tuple[str, str], pd.DataFrame],
    unions: Mapping[str, pd.DataFrame],
    planted: set[int],
    criterion: str = "fdr",
) -> pd.DataFrame:
    """Rows per (model, metric) of `regions` (region_statistics tables), then per metric the pooled per-model sets
    (``union_of_models``) and the region-level union test (``union``: metric -> union_statistics table)."""
    rows = []
    for metric, per_model in tables_by_metric(regions):
        pooled: set[int] = set()
        for model, table in per_model.items():
            found = set(significant_regions(table, criterion))
            pooled |= found
            rows.append(_row(metric, model, criterion, planted, found))
        rows.append(_row(metric, POOLED, criterion, planted, pooled))
        union = significant_regions(unions[metric], criterion)
        rows.append(_row(metric, UNION, criterion, planted, set(union)))
    return pd.DataFrame(rows, columns=list(TRUTH_COLUMNS))
