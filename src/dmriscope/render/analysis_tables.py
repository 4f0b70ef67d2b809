"""The tables of the cohort and the analysis, written for people: Table 1 and 1b (split), 1c (tensors), Table 3 and
the model comparison (statistics), the truth check (synthetic cohorts). Each reads its rule's inputs, asks the stage
module for the numbers and writes TSV + Markdown + HTML through `write_table`; Tables 2 and 4 live in
`render.tables`."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

import pandas as pd

from dmriscope.brain_size import read_volumes
from dmriscope.label import Label
from dmriscope.render.tables import write_table
from dmriscope.split import set_groups, table1, volume_table
from dmriscope.stats import REGION_COLUMNS, compare_models, model_metric_from_path, read_tsv, table3
from dmriscope.truth import POOLED, UNION, planted_sex_regions, truth_check

log = logging.getLogger(__name__)


def _read_split(path: str, label: Label) -> pd.DataFrame:
    return pd.read_csv(path, sep="\t", dtype={"subject": str, "age_bin": str, label.column: str})


def render_table1_files(
    *, split_path: str, tsv: str, md: str, html: str | None = None, label: Mapping | None = None
) -> None:
    """Rule render_table1: Table 1 as TSV, Markdown and (for the report) HTML (``label``: config section)."""
    group = Label.from_config(label)
    split = _read_split(split_path, group)
    sets = "test folds" if (split["set"] == "cv").any() else "training, validation and test sets"
    title = f"Table 1. Subjects by age bin and {group.title} in the {sets}"
    write_table(table1(split, group).reset_index(), tsv, md, title, html)


def render_volume_table_files(
    *, split_path: str, volumes: str, tsv: str, md: str, html: str | None = None, label: Mapping | None = None
) -> None:
    """Rule render_table1b: brain volume by group and set as TSV, Markdown and HTML."""
    group = Label.from_config(label)
    title = f"Table 1b. Native brain-mask volume, mean ± SD (cm³), by {group.title}"
    write_table(volume_table(_read_split(split_path, group), read_volumes(volumes), group), tsv, md, title, html)


def smoothness_table(tables: Mapping[str, pd.DataFrame], split: pd.DataFrame, label: Label) -> pd.DataFrame:
    """Table 1c: each metric's map smoothness (FWHM in voxels of the model grid) by group in each set (or test
    fold) and overall, before and after the blur of ``tensors.smooth_to_fwhm`` (`dmriscope.smoothness`)."""
    pos, neg = label.names
    used, groups = set_groups(split)
    rows = []
    for metric, table in tables.items():
        for name, part in (*groups, ("all", used)):
            chosen = table[table["subject"].isin(part["subject"])]
            a, b = chosen[chosen["group"] == label.positive], chosen[chosen["group"] == label.negative]
            rows.append({
                "metric": metric,
                "set": name,
                f"{pos} FWHM": f"{a['fwhm'].mean():.3f} ± {a['fwhm'].std():.3f}",
                f"{neg} FWHM": f"{b['fwhm'].mean():.3f} ± {b['fwhm'].std():.3f}",
                f"{pos} / {neg}": round(a["fwhm"].mean() / b["fwhm"].mean(), 3),
                f"{pos} / {neg} after blur": round(a["fwhm_after"].mean() / b["fwhm_after"].mean(), 3),
            })  # fmt: skip
    return pd.DataFrame(rows)


def read_smoothness(path: str) -> pd.DataFrame:
    """A ``{metric}_smoothness.tsv`` (`dmriscope.tensors.stack_tensors`); subject IDs and groups stay strings."""
    return read_tsv(path, required=("subject", "group", "fwhm", "fwhm_after"), dtype={"subject": str, "group": str})


def render_smoothness_table_files(
    *, split_path: str, smoothness: Sequence[str], metrics: Sequence[str], tsv: str, md: str,
    html: str | None = None, label: Mapping | None = None,
) -> None:  # fmt: skip
    """Rule render_table1c: map smoothness by group, set and metric as TSV, Markdown and HTML."""
    group = Label.from_config(label)
    tables = {m: read_smoothness(p) for m, p in zip(metrics, smoothness, strict=True)}
    title = f"Table 1c. Smoothness of the registered maps (FWHM, model-grid voxels), mean ± SD, by {group.title}"
    write_table(smoothness_table(tables, _read_split(split_path, group), group), tsv, md, title, html)


def _unions(paths: Sequence[str], required: Sequence[str]) -> dict[str, pd.DataFrame]:
    """metric -> the union's regions table, from ``results/occlusion/union/{metric}/regions.tsv`` files."""
    return {model_metric_from_path(p)[1]: read_tsv(p, required=required) for p in paths}


def table3_files(*, regions: Sequence[str], union: Sequence[str], tsv: str, md: str, html: str | None = None) -> None:
    """Rule render_table3: the models' and the unions' regions.tsv files -> Table 3 (TSV and Markdown)."""
    tables = {model_metric_from_path(p): read_tsv(p, required=REGION_COLUMNS) for p in regions}
    out = table3(tables, _unions(union, ("region", "name", "significant_raw", "significant_fdr")))
    title = "Table 3: white-matter regions whose occlusion lowers the correct-class probability"
    write_table(out, tsv, md, title, html)


def compare_models_files(
    *, predictions: Sequence[str], tsv: str, md: str, reference: str = "vit_scratch", html: str | None = None
) -> pd.DataFrame:
    """Rule compare_models: the models' test predictions.tsv files -> model_comparison (TSV and Markdown)."""
    tables = {
        model_metric_from_path(p): read_tsv(p, required=("subject", "label", "p_negative", "p_positive"))
        for p in predictions
    }
    out = compare_models(tables, reference)
    write_table(out, tsv, md, f"Correct-class probabilities: each model vs {reference} (paired Wilcoxon)", html)
    return out


def truth_check_files(
    *,
    regions: Sequence[str],
    union: Sequence[str],
    planted: str,
    tsv: str,
    md: str,
    criterion: str = "fdr",
    html: str | None = None,
    label: Mapping | None = None,
) -> pd.DataFrame:
    """Rule check_truth: the models' and the unions' regions.tsv + the planted-regions TSV -> truth_check (the
    planted rows whose effect is the label's column, sex by default)."""
    group = Label.from_config(label)
    required = (f"significant_{criterion}", "region", "name", "p_raw")
    tables = {model_metric_from_path(p): read_tsv(p, required=required) for p in regions}
    out = truth_check(tables, _unions(union, required), planted_sex_regions(planted, group.column), criterion)
    effect = "sex" if group.column == "sex" else f"{group.column} ({group.title})"
    write_table(out, tsv, md, f"Planted {effect}-effect regions vs {criterion}-significant regions", html)
    for row in out[out["model"].isin([POOLED, UNION])].itertuples():
        log.info("%s %s: precision %.2f recall %.2f", row.metric, row.model, row.precision, row.recall)
    return out
