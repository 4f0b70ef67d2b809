"""Table 2 (test-set performance per model and metric, with AUC confidence intervals) and Table 4 (parameter counts).

Both are written as TSV (machine-readable) and Markdown (pandas ``to_markdown``; ``tabulate`` ships with snakemake).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import pandas as pd

from dmriscope.io import InputError, atomic_path
from dmriscope.label import SEX, Label
from dmriscope.stats import model_metric_from_path

log = logging.getLogger(__name__)

DISPLAY_NAMES = {
    "cnn2d": "2D CNN (ResNet18 on sagittal slabs)",
    "cnn3d": "3D CNN (ResNet-10)",
    "vit": "3D ViT",
    "vit_scratch": "3D ViT, from scratch",
    "vit_linprobe": "3D ViT, MAE + linear probing",
    "vit_finetune": "3D ViT, MAE + fine-tuning",
    "region_means": "48 region means (logistic regression)",
    "size_only": "brain volume alone (logistic regression)",
}
BASELINE = "size_only"
BASELINES = ("region_means", BASELINE)  # yardsticks: rows of Table 2, outside the chance check's family
CELL_KEYS = ("auc", "accuracy", "precision", "recall")


def _number(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def performance_cell(metrics: Mapping) -> str:
    """``AUC/Acc/Prec/Rec`` with 3 decimals, e.g. ``0.912/0.850/0.833/0.789``."""
    return "/".join(_number(metrics[k]) for k in CELL_KEYS)


def ci_cell(metrics: Mapping) -> str:
    """``[low, high]`` of the AUC with 3 decimals (``n/a`` when undefined)."""
    ci = metrics.get("auc_ci")
    return "n/a" if not ci else f"[{ci[0]:.3f}, {ci[1]:.3f}]"


def table2(results: Mapping[tuple[str, str], Mapping], models: Sequence[str], metrics: Sequence[str]) -> pd.DataFrame:
    """One row per model: performance cells per metric, then the AUC CI per metric.

    Args:
        results: (model, metric) -> the content of that model's metrics.json.
    """
    rows = []
    holm = holm_adjusted(results, [m for m in models if m not in BASELINES], metrics)
    matched = any("volume_matched" in r for r in results.values())
    for model in models:
        row = {"model": model, "name": DISPLAY_NAMES.get(model, model)}
        for metric in metrics:
            if (model, metric) not in results:
                raise InputError(f"table 2: no metrics.json for model {model}, metric {metric}")
            row[metric] = performance_cell(results[model, metric])
        for metric in metrics:
            row[f"{metric} AUC CI"] = ci_cell(results[model, metric])
        for metric in metrics:
            row[f"{metric} AUC p (Holm)"] = holm.get((model, metric))
        if matched:
            for metric in metrics:
                row[f"{metric} matched AUC"] = matched_cell(results[model, metric])
            for metric in metrics:
                row[f"{metric} partialled AUC"] = partialled_cell(results[model, metric])
                row[f"{metric} partialled ceiling"] = results[model, metric].get("volume_partialled", {}).get("ceiling")
        if has_spread(results):
            for metric in metrics:
                row[f"{metric} fold AUC"] = fold_cell(results[model, metric])
                row[f"{metric} seed AUC"] = seed_cell(results[model, metric])
        rows.append(row)
    return pd.DataFrame(rows)


def holm_adjusted(
    results: Mapping[tuple[str, str], Mapping], models: Sequence[str], metrics: Sequence[str]
) -> dict[tuple[str, str], float | None]:
    """The one-sided AUC > 0.5 p of every model x metric (``auc_p``), Holm-adjusted over all of them: the
    family-wise chance check (15 CIs at 95% exclude 0.5 about once by chance; Holm keeps that family at 5%)."""
    from statsmodels.stats.multitest import multipletests

    keys = [(m, k) for m in models for k in metrics if results.get((m, k), {}).get("auc_p") is not None]
    adjusted = dict.fromkeys(((m, k) for m in models for k in metrics), None)
    if keys:
        corrected = multipletests([results[key]["auc_p"] for key in keys], method="holm")[1]
        adjusted.update({key: float(p) for key, p in zip(keys, corrected, strict=True)})
    return adjusted


def chance_sentence(table: pd.DataFrame, metrics: Sequence[str], alpha: float = 0.05) -> str:
    """How many CIs exclude 0.5 and how many model x metric pairs beat chance at a family-wise ``alpha``."""
    table = table[~table["model"].isin(BASELINES)]
    cis = table[[f"{m} AUC CI" for m in metrics]].to_numpy().ravel()
    bounds = [tuple(float(v) for v in c.strip("[]").split(", ")) for c in cis if c != "n/a"]
    excluding = sum(1 for low, high in bounds if low > 0.5 or high < 0.5)
    p_holm = table[[f"{m} AUC p (Holm)" for m in metrics]].to_numpy(float).ravel()
    beating = int((p_holm < alpha).sum())
    verdict = (
        f"{beating} of {p_holm.size} beat chance at a family-wise {alpha:g} (one-sided Mann-Whitney p of AUC > 0.5, "
        "Holm-adjusted over all model x metric pairs; a cohort without signal should show 0, and does in 95% of "
        "null runs)"
    )
    expected = f"about {0.05 * len(bounds):.2g} expected by chance"
    return f"{excluding} of {len(bounds)} AUC CIs exclude 0.5 ({expected}); {verdict}."


def matched_cell(metrics: Mapping) -> str:
    """``AUC [low, high] (n pairs)`` among volume-matched male-female test pairs; ``-`` when not computed, and
    ``no pair within the caliper`` when the sexes' volumes do not overlap (then nothing can be matched)."""
    block = metrics.get("volume_matched")
    if block and block.get("n_pairs") == 0:
        return "no pair within the caliper"
    if not block or block.get("auc") is None:
        return "-"
    ci = f" [{block['ci'][0]:.3f}, {block['ci'][1]:.3f}]" if block.get("ci") else ""
    return f"{block['auc']:.3f}{ci} ({block['n_pairs']} pairs)"


def partialled_cell(metrics: Mapping) -> str:
    """``AUC [low, high]`` of the logit with brain volume partialled out (`dmriscope.size_baseline`); ``-`` when
    not computed."""
    block = metrics.get("volume_partialled")
    if not block or block.get("auc") is None:
        return "-"
    return f"{block['auc']:.3f} [{block['ci'][0]:.3f}, {block['ci'][1]:.3f}]"


def has_spread(results: Mapping[tuple[str, str], Mapping]) -> bool:
    """Whether any model x metric was pooled from more than one fold or seed (Table 2c is then written)."""
    return any(r.get("folds", 1) > 1 or len(r.get("seeds", [0])) > 1 for r in results.values())


def fold_cell(metrics: Mapping) -> str:
    """``mean ± SD (k folds)`` of the per-fold test AUC (seeds pooled); ``-`` for one fold."""
    if metrics.get("folds", 1) < 2 or metrics.get("fold_auc_sd") is None:
        return "-"
    return f"{metrics['fold_auc_mean']:.3f} ± {metrics['fold_auc_sd']:.3f} ({metrics['folds']} folds)"


def seed_cell(metrics: Mapping) -> str:
    """``min / median / max (n seeds)`` of the per-seed AUC (folds pooled); ``-`` for one seed."""
    if len(metrics.get("seeds", [0])) < 2 or metrics.get("seed_auc_min") is None:
        return "-"
    values = "/".join(f"{metrics[f'seed_auc_{k}']:.3f}" for k in ("min", "median", "max"))
    return f"{values} ({len(metrics['seeds'])} seeds)"


TABLE_CSS = (
    "body{font-family:sans-serif;font-size:13px} table{border-collapse:collapse}"
    " td,th{border:1px solid #bbb;padding:3px 6px;text-align:left;vertical-align:top} th{background:#eee}"
)


def write_html(sections: Sequence[tuple[str, pd.DataFrame]], html: str | os.PathLike, title: str) -> None:
    """A standalone HTML page of one or more (caption, table) sections: what the Snakemake report shows inline."""
    parts = []
    for caption, frame in sections:
        body = frame.to_html(index=False, float_format=lambda v: f"{v:.4g}", na_rep="-", border=0)
        parts.append(f"<h3>{caption}</h3>{body}")
    page = f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{title}</title><style>{TABLE_CSS}</style>"
    with atomic_path(html) as tmp:
        Path(tmp).write_text(f"{page}</head><body>{''.join(parts)}</body></html>\n")


def write_table(
    frame: pd.DataFrame,
    tsv: str | os.PathLike,
    md: str | os.PathLike,
    title: str = "",
    html: str | os.PathLike | None = None,
) -> None:
    """Write `frame` atomically as TSV, as a Markdown table and (optionally) as a standalone HTML page.

    Floats get 4 significant digits in Markdown and HTML.
    """
    with atomic_path(tsv) as tmp:
        frame.to_csv(tmp, sep="\t", index=False)
    shown = frame.astype(object).where(frame.notna(), "-")
    text = shown.to_markdown(index=False, floatfmt=".4g") if len(frame) else "(no rows)"
    with atomic_path(md) as tmp:
        Path(tmp).write_text((f"# {title}\n\n" if title else "") + text + "\n")
    if html is not None:
        write_html([(title, frame)], html, title)


def read_metrics(path: str | Path) -> dict:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise InputError(f"{path}: cannot read metrics ({exc})") from None


def read_results(paths: Sequence[str | Path], models: Sequence[str], metrics: Sequence[str]) -> dict:
    """(model, metric) -> metrics.json content, each file keyed by its own path ``.../{model}/{metric}/metrics.json``
    (not by its position in the list); InputError naming a pair of ``models`` x ``metrics`` that has no file."""
    results = {model_metric_from_path(p): read_metrics(p) for p in paths}
    missing = [f"{m}/{k}" for m in models for k in metrics if (m, k) not in results]
    if missing:
        raise InputError(f"table 2: no metrics.json for {', '.join(missing)} ({len(paths)} files given)")
    return results


def table2_markdown(
    table: pd.DataFrame, metrics: Sequence[str], ci_level: float, n_test: dict, label: Label = SEX
) -> str:
    """Table 2 and its CI table as Markdown, with captions stating the cell layout and the positive class."""
    perf = table[["name", *metrics]].rename(columns={"name": "model"})
    ci = table[["name", *[f"{m} AUC CI" for m in metrics]]].rename(columns={"name": "model"})
    ci.columns = ["model", *metrics]
    pos, neg = label.names
    tested = ", ".join(f"{n} {pos} / {f} {neg}" for n, f in sorted(set(n_test.values())))
    kfold = bool((table.filter(like="fold AUC") != "-").to_numpy().any())
    where = "out of fold (every subject tested once, by its fold's model)" if kfold else "on the test set"
    return (
        f"**Table 2.** {label.title.capitalize()} classification {where} ({tested}). Cells: "
        f"AUC/accuracy/precision/recall; positive class = {pos}, threshold P({pos}) >= 0.5.\n\n"
        + perf.to_markdown(index=False)
        + f"\n\n**Table 2b.** {ci_level:.0%} confidence intervals of the test AUC (stratified bootstrap).\n\n"
        + ci.to_markdown(index=False)
        + "\n\nChance check: "
        + chance_sentence(table, metrics)
        + "\n"
        + spread_markdown(table, metrics)
        + matched_markdown(table, metrics, label)
    )


def matched_caption(label: Label = SEX) -> str:
    return (
        f"Brain size controls of the test AUC. Matched: AUC among volume-matched {label.positive_name}-"
        f"{label.negative_name} test pairs (native brain volumes within 0.2 SD; bootstrap CI). Partialled: AUC of "
        "the logit P after its least-squares line on brain volume is removed (bootstrap CI), beside the same "
        "statistic of the labels themselves (ceiling: what volume leaves of the label). A classifier of brain "
        "size falls to about 0.5 in both, a microstructural difference does not"
    )


def matched_table(table: pd.DataFrame, metrics: Sequence[str]) -> pd.DataFrame | None:
    matched = [f"{m} matched AUC" for m in metrics]
    if not set(matched) <= set(table.columns):
        return None
    partialled = [f"{m} partialled AUC" for m in metrics if f"{m} partialled AUC" in table.columns]
    out = table[["name", *matched, *partialled]].rename(columns={"name": "model"})
    out.columns = ["model", *[f"{m} matched" for m in metrics], *[c.replace(" AUC", "") for c in partialled]]
    if partialled:
        ceiling = {"model": "ceiling (the labels themselves)"} | {f"{m} matched": "1.000" for m in metrics}
        for metric in metrics:
            values = table[f"{metric} partialled ceiling"].dropna()
            ceiling[f"{metric} partialled"] = f"{values.iloc[0]:.3f}" if len(values) else "-"
        out = pd.concat([out, pd.DataFrame([ceiling])], ignore_index=True)
    return out


def matched_markdown(table: pd.DataFrame, metrics: Sequence[str], label: Label = SEX) -> str:
    matched = matched_table(table, metrics)
    if matched is None:
        return ""
    return f"\n**Table 2d.** {matched_caption(label)}.\n\n" + matched.to_markdown(index=False) + "\n"


def spread_table(table: pd.DataFrame, metrics: Sequence[str]) -> pd.DataFrame | None:
    """Table 2c (per-fold AUC mean ± SD and per-seed AUC min/median/max per metric), or None without a spread."""
    columns = [c for m in metrics for c in (f"{m} fold AUC", f"{m} seed AUC") if c in table.columns]
    if not columns:
        return None
    return table[["name", *columns]].rename(columns={"name": "model"})


def spread_markdown(table: pd.DataFrame, metrics: Sequence[str]) -> str:
    spread = spread_table(table, metrics)
    if spread is None:
        return ""
    return (
        "\n**Table 2c.** Spread of the test AUC: per fold (its test part, seeds pooled; mean ± SD over folds) and "
        "per seed (all folds, one seed; min/median/max). Table 2 reports the pooled ensemble.\n\n"
        + spread.to_markdown(index=False)
        + "\n"
    )


def render_table2(
    metric_files: Sequence[str],
    models: Sequence[str],
    metrics: Sequence[str],
    out_tsv: str,
    out_md: str,
    out_html: str | None = None,
    baseline: str | None = None,
    region_baseline: Sequence[str] | None = None,
    label: Mapping | None = None,
) -> pd.DataFrame:
    """Rule render_table2: read every metrics.json and write table2_performance.{tsv,md}; ``baseline``: the
    size-only classifier's metrics.json, shown as its own row; ``region_baseline``: the region-mean classifier's per
    metric; ``label``: config section ``label`` (default sex), for the captions."""
    group = Label.from_config(label)
    results = read_results(metric_files, models, metrics)
    if region_baseline is not None:
        results.update(read_results(region_baseline, ["region_means"], metrics))
        models = [*models, "region_means"]
    if baseline is not None:
        content = read_metrics(baseline)
        results.update({(BASELINE, metric): content for metric in metrics})
        models = [*models, BASELINE]
    table = table2(results, models, metrics)
    levels = {r.get("ci_level", 0.95) for r in results.values()}
    n_test = {key: (r["n_positive"], r["n_negative"]) for key, r in results.items()}
    with atomic_path(out_tsv) as tmp:
        table.to_csv(tmp, sep="\t", index=False)
    with atomic_path(out_md) as tmp:
        Path(tmp).write_text(table2_markdown(table, metrics, min(levels), n_test, group))
    if out_html is not None:
        perf = table[["name", *metrics]].rename(columns={"name": "model"})
        ci = table[["name", *[f"{m} AUC CI" for m in metrics]]].rename(columns={"name": "model"})
        sections = [
            (f"Table 2. Test AUC/accuracy/precision/recall (positive class = {group.positive_name})", perf),
            (
                f"Table 2b. {min(levels):.0%} bootstrap confidence intervals of the test AUC. "
                f"Chance check: {chance_sentence(table, metrics)}",
                ci,
            ),
        ]
        spread = spread_table(table, metrics)
        if spread is not None:
            sections.append(("Table 2c. Spread of the test AUC over folds and seeds", spread))
        matched = matched_table(table, metrics)
        if matched is not None:
            sections.append((f"Table 2d. {matched_caption(group)}", matched))
        write_html(sections, out_html, "Table 2")
    log.info("table 2: %d models x %d metrics", len(models), len(metrics))
    return table


def table4(rows: Sequence[Mapping]) -> pd.DataFrame:
    """Parameter counts per model: model, name, backbone, head, total (ints)."""
    frame = pd.DataFrame(list(rows), columns=["model", "backbone", "head", "total"])
    frame.insert(1, "name", [DISPLAY_NAMES.get(m, m) for m in frame["model"]])
    return frame


def table4_markdown(table: pd.DataFrame, grid: Sequence[int]) -> str:
    """Table 4 as Markdown: counts with thousands separators and the total in millions."""
    shown = table.drop(columns="model").rename(columns={"name": "model"})
    for column in ("backbone", "head", "total"):
        shown[column] = [f"{int(v):,}" for v in table[column]]
    shown["total (M)"] = [f"{v / 1e6:.1f}" for v in table["total"]]
    size = "x".join(str(g) for g in grid)
    return (
        f"**Table 4.** Parameters of each model at the paper's input size {size} "
        "(backbone = feature extractor, head = classifier).\n\n" + shown.to_markdown(index=False) + "\n"
    )


def render_table4(*, tsv: str, md: str, html: str | None = None) -> pd.DataFrame:
    """Rule render_table4: parameter counts of every registered model at 180x224x224 (built on the meta device)."""
    from dmriscope.models.registry import PAPER_GRID, table4_rows

    table = table4(table4_rows(PAPER_GRID))
    with atomic_path(tsv) as tmp:
        table.to_csv(tmp, sep="\t", index=False)
    with atomic_path(md) as tmp:
        Path(tmp).write_text(table4_markdown(table, PAPER_GRID))
    if html is not None:
        size = "x".join(str(g) for g in PAPER_GRID)
        write_html([(f"Table 4. Parameters at the paper's input size {size}", table)], html, "Table 4")
    log.info("table 4: %s", dict(zip(table["model"], table["total"], strict=True)))
    return table
