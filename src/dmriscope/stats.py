"""Statistics on occlusion results: per-region Wilcoxon tests, Table 3, and the paired model comparison.

Per region (`region_statistics`): the one-sided Wilcoxon signed-rank test of the test subjects' drops against 0,
alternative "greater" (occluding the region lowers the correct-class probability), as
``scipy.stats.wilcoxon(drop, alternative="greater")`` (zeros dropped, scipy's default; exact null distribution
for small samples without ties). A region whose drops are all zero cannot be tested and gets p = 1.

The drop is measured on one of two scales (config key ``occlusion.test_scale``):

- ``probability`` (the paper): delta_p = p_before - p_after;
- ``logit`` (default): the drop of the correct class's log-odds, logit(p_before) - logit(p_after), with p clipped
  to [1e-7, 1 - 1e-7] (float32 resolution; a subject saturated at p = 1 before and after gives 0 and is dropped).

Both have the same signs (logit is monotone), so only the ranks differ. On the probability scale the ranks are
dominated by the least confident subjects, whose probabilities can still move, whereas a confident model's evidence
shows only in log-odds (how many planted regions each scale finds is measured in README, "Planted truth"). The
paper's criterion is the raw p < alpha; Benjamini-Hochberg (FDR) and Holm (FWER) adjusted p-values over the
regions of one model x metric are reported beside it (``statsmodels.stats.multitest.multipletests``).

Union over models (`union_statistics`): per region Simes' combination of the models' raw p-values, then the same
corrections over the regions; it controls the FDR of the union, which pooling each model's FDR-significant regions
does not (the two compared on the synthetic cohorts: README, "Planted truth"). With ``occlusion.union_min_models``
u > 1 the per-region null is Benjamini and Heller's (2008) partial conjunction, "fewer than u models lean on the
region", tested with the Simes p of the region's k - u + 1 largest p-values: a region then needs u models, not one.

Model comparison (`compare_models`): per metric, the two-sided Wilcoxon signed-rank test of each model's
correct-class probabilities against the reference model's (vit_scratch in the paper), paired by test subject.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import special, stats
from statsmodels.stats.multitest import multipletests

from dmriscope.io import InputError, atomic_path

log = logging.getLogger(__name__)

SCALES = ("logit", "probability")
UNION = "union"  # the model name of the region-level union over models (`union_statistics`)
P_CLIP = 1e-7

REGION_COLUMNS = (
    "region",
    "name",
    "n_subjects",
    "median_delta_p",
    "mean_delta_p",
    "median_delta_logit",
    "test_scale",
    "n_voxels",
    "volume_fraction",
    "statistic",
    "p_raw",
    "p_fdr",
    "p_holm",
    "significant_raw",
    "significant_fdr",
    "significant_holm",
)
# the per-region test results, before volumes and corrections are added
TEST_COLUMNS = REGION_COLUMNS[:7] + ("statistic", "p_raw")


def wilcoxon(delta: Sequence[float] | np.ndarray, alternative: str = "greater") -> tuple[float, float]:
    """Wilcoxon signed-rank test of paired differences `delta` (n,) (scipy; ``alternative`` "greater": delta > 0,
    "two-sided"): (statistic, p). All-zero or empty -> (0, 1)."""
    delta = np.asarray(delta, dtype=float)
    if delta.size == 0 or not np.any(delta != 0):
        return 0.0, 1.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=UserWarning)  # "exact p-value calculation does not work with ties"
        try:
            res = stats.wilcoxon(delta, alternative=alternative)
        except ValueError:
            return 0.0, 1.0
    p = float(res.pvalue)
    return float(res.statistic), (1.0 if not np.isfinite(p) else p)


def wilcoxon_greater(delta: Sequence[float] | np.ndarray) -> tuple[float, float]:
    """One-sided Wilcoxon signed-rank test of `delta` > 0 (the occlusion test): (W+ statistic, p)."""
    return wilcoxon(delta, "greater")


def adjust_pvalues(p: Sequence[float] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Benjamini-Hochberg and Holm adjusted p-values of `p` (m,) -> ((m,), (m,)); empty in, empty out."""
    p = np.asarray(p, dtype=float)
    if p.size == 0:
        return p.copy(), p.copy()
    return multipletests(p, method="fdr_bh")[1], multipletests(p, method="holm")[1]


def region_volumes(atlas: np.ndarray, wm_mask: np.ndarray) -> pd.DataFrame:
    """Voxels per atlas region (S, H, W int labels) and that count over the WM mask's voxel count."""
    labels, counts = np.unique(np.asarray(atlas)[np.asarray(atlas) > 0], return_counts=True)
    n_wm = int(np.count_nonzero(wm_mask))
    if n_wm == 0:
        raise InputError("occlusion: the white-matter mask is empty")
    return pd.DataFrame({"region": labels.astype(int), "n_voxels": counts, "volume_fraction": counts / n_wm})


def log_odds_drop(p_before: np.ndarray, p_after: np.ndarray) -> np.ndarray:
    """logit(p_before) - logit(p_after), probabilities clipped to [`P_CLIP`, 1 - `P_CLIP`]."""
    before = np.clip(np.asarray(p_before, dtype=np.float64), P_CLIP, 1.0 - P_CLIP)
    after = np.clip(np.asarray(p_after, dtype=np.float64), P_CLIP, 1.0 - P_CLIP)
    return special.logit(before) - special.logit(after)


def region_statistics(
    delta_p: pd.DataFrame, atlas: np.ndarray, wm_mask: np.ndarray, alpha: float = 0.05, scale: str = "logit"
) -> pd.DataFrame:
    """One row per region in `delta_p` (the long occlusion table): the Wilcoxon test and its corrections.

    Columns: `REGION_COLUMNS`; the test runs on the drops of ``scale`` ('logit' or 'probability', see the module
    doc); significance flags compare p_raw / p_fdr / p_holm with `alpha`.
    """
    missing = {"subject", "region", "name", "p_before", "p_after", "delta_p"} - set(delta_p.columns)
    if missing:
        raise InputError(f"occlusion table lacks columns {sorted(missing)}")
    if scale not in SCALES:
        raise InputError(f"config key 'occlusion.test_scale': {scale!r} is not one of {SCALES}")
    delta_p = delta_p.assign(delta_logit=log_odds_drop(delta_p["p_before"], delta_p["p_after"]))
    column = "delta_p" if scale == "probability" else "delta_logit"
    rows = []
    for (region, name), group in delta_p.groupby(["region", "name"], sort=True):
        stat, p = wilcoxon_greater(group[column].to_numpy())
        rows.append(
            {
                "region": int(region),
                "name": name,
                "n_subjects": int(group["subject"].nunique()),
                "median_delta_p": float(group["delta_p"].median()),
                "mean_delta_p": float(group["delta_p"].mean()),
                "median_delta_logit": float(group["delta_logit"].median()),
                "test_scale": scale,
                "statistic": stat,
                "p_raw": p,
            }
        )
    table = pd.DataFrame(rows, columns=list(TEST_COLUMNS))
    n_max = int(table["n_subjects"].max()) if len(table) else 0
    if 0.5**n_max >= alpha:
        log.warning(
            "%d test subjects: the smallest attainable Wilcoxon p is %.3g >= alpha %.3g", n_max, 0.5**n_max, alpha
        )
    table = table.merge(region_volumes(atlas, wm_mask), on="region", how="left")
    return _add_corrections(table, alpha)[list(REGION_COLUMNS)]


def _add_corrections(table: pd.DataFrame, alpha: float) -> pd.DataFrame:
    """Add p_fdr and p_holm (over the table's rows) from p_raw, and the significant_{raw,fdr,holm} flags."""
    table["p_fdr"], table["p_holm"] = adjust_pvalues(table["p_raw"].to_numpy())
    for kind in ("raw", "fdr", "holm"):
        table[f"significant_{kind}"] = table[f"p_{kind}"] < alpha
    return table


def simes(p: Sequence[float] | np.ndarray) -> float:
    """Simes' combined p of k p-values (the global null: none of the k effects exists) = min over the sorted
    p_(i) of k p_(i) / i, which is the smallest Benjamini-Hochberg adjusted p. Valid under independence and
    positive dependence (PRDS), as for one region's tests in several models on the same subjects."""
    p = np.asarray(p, dtype=float)
    if p.size == 0:
        raise ValueError("simes: no p-values")
    return float(multipletests(p, method="fdr_bh")[1].min())  # BH alone: statsmodels' Holm costs ~85 ms a call


def partial_conjunction(p: Sequence[float] | np.ndarray, u: int = 1) -> float:
    """Benjamini and Heller's (2008, Biometrics 64:1215) Simes-based partial-conjunction p of k p-values, for the
    null "fewer than u of the k effects exist": the Simes p of the k - u + 1 largest, min over i of
    (k - u + 1) p_(u-1+i) / i. u = 1 is Simes' global null, u = k the largest p; 1 when k < u (not testable)."""
    p = np.sort(np.asarray(p, dtype=float))
    if u < 1:
        raise ValueError(f"partial conjunction: u = {u} < 1")
    return simes(p[u - 1 :]) if p.size >= u else 1.0


def union_statistics(tables: Mapping[str, pd.DataFrame], alpha: float = 0.05, min_models: int = 1) -> pd.DataFrame:
    """Region-level test of the union over models (one metric): is a region driving at least `min_models` models
    (1: *any* model)?

    tables: model -> `region_statistics` table. Per region, the `partial_conjunction` p of the models' raw
    p-values (``p_raw``; Simes' combination when min_models is 1), then BH-FDR and Holm over the regions
    (``p_fdr``, ``p_holm``) and the flags. Taking the union of each model's FDR-significant sets does not control
    the FDR of that union (each model adds its own false discoveries; README, "Planted truth"); this does. Regions
    missing from a model's table are combined over the models that have them. Columns: region, name, n_models,
    min_models, p_raw, p_fdr, p_holm, significant_{raw,fdr,holm}.
    """
    if not tables:
        raise InputError("union of models: no region tables")
    if not 1 <= min_models <= len(tables):
        raise InputError(
            f"config key 'occlusion.union_min_models': {min_models} is not between 1 and the {len(tables)} models"
            f" of the union ({', '.join(sorted(tables))})"
        )
    frames = [t[["region", "name", "p_raw"]].assign(model=m) for m, t in tables.items()]
    long = pd.concat(frames, ignore_index=True).astype({"region": int})
    table = (
        long.groupby("region", sort=True)
        .agg(
            name=("name", "first"),
            n_models=("model", "nunique"),
            p_raw=("p_raw", lambda p: partial_conjunction(p, min_models)),
        )
        .reset_index()
    )
    table.insert(3, "min_models", min_models)
    return _add_corrections(table, alpha)


def tables_by_metric(
    regions: Mapping[tuple[str, str], pd.DataFrame],
) -> list[tuple[str, dict[str, pd.DataFrame]]]:
    """(metric, {model: table}) per metric, metrics sorted, models in the order of `regions`."""
    return [
        (metric, {model: t for (model, m), t in regions.items() if m == metric})
        for metric in sorted({m for _, m in regions})
    ]


def significant_regions(table: pd.DataFrame, criterion: str = "raw") -> list[int]:
    """Atlas indices flagged significant in a `region_statistics` table by 'raw', 'fdr' or 'holm'."""
    return sorted(int(r) for r in table.loc[table[f"significant_{criterion}"].astype(bool), "region"])


def _region_list(table: pd.DataFrame, criterion: str) -> str:
    rows = table[table[f"significant_{criterion}"].astype(bool)].sort_values("region")
    return "; ".join(f"{int(r)} {n}" for r, n in zip(rows["region"], rows["name"])) or "-"


def _table3_row(metric: str, model: str, table: pd.DataFrame) -> dict:
    return {
        "metric": metric,
        "model": model,
        "n_raw": int(table["significant_raw"].sum()),
        "regions_raw": _region_list(table, "raw"),
        "n_fdr": int(table["significant_fdr"].sum()),
        "regions_fdr": _region_list(table, "fdr"),
    }


def table3(regions: Mapping[tuple[str, str], pd.DataFrame], unions: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
    """Table 3: significant regions per (model, metric), by the raw p (the paper) and by BH-FDR, then per metric
    the region-level union over models (metric -> `union_statistics` table, model ``union``)."""
    rows = [_table3_row(metric, model, table) for (model, metric), table in regions.items()]
    rows += [_table3_row(metric, UNION, unions[metric]) for metric in sorted(unions)]
    return pd.DataFrame(rows, columns=["metric", "model", "n_raw", "regions_raw", "n_fdr", "regions_fdr"])


def correct_class_probabilities(predictions: pd.DataFrame, source: str = "predictions") -> pd.Series:
    """From a predictions table (subject, label, p_negative, p_positive): P(correct class) indexed by subject."""
    missing = {"subject", "label", "p_negative", "p_positive"} - set(predictions.columns)
    if missing:
        raise InputError(f"{source}: lacks columns {sorted(missing)}")
    p = np.where(predictions["label"].astype(int) == 1, predictions["p_positive"], predictions["p_negative"])
    return pd.Series(p.astype(float), index=predictions["subject"].astype(str), name="p_correct")


def compare_models(predictions: Mapping[tuple[str, str], pd.DataFrame], reference: str = "vit_scratch") -> pd.DataFrame:
    """Per metric, each model's correct-class probabilities against `reference`'s (paired two-sided Wilcoxon).

    predictions: (model, metric) -> test-set predictions table. Columns of the result: metric, model, reference,
    n, median_p_model, median_p_reference, median_difference, statistic, p_value.
    """
    rows = []
    for metric in sorted({m for _, m in predictions}):
        if (reference, metric) not in predictions:
            raise InputError(f"config key 'occlusion.reference_model': no {reference} predictions for {metric}")
        ref = correct_class_probabilities(predictions[(reference, metric)], f"{reference}/{metric}")
        for (model, m), frame in predictions.items():
            if m != metric or model == reference:
                continue
            own = correct_class_probabilities(frame, f"{model}/{metric}")
            paired = pd.concat([own.rename("model"), ref.rename("ref")], axis=1, join="inner")
            if len(paired) != len(own) or len(paired) != len(ref):
                raise InputError(f"{model}/{metric}: test subjects differ from {reference}'s")
            diff = (paired["model"] - paired["ref"]).to_numpy()
            stat, p = wilcoxon(diff, "two-sided")
            rows.append(
                {
                    "metric": metric,
                    "model": model,
                    "reference": reference,
                    "n": len(paired),
                    "median_p_model": float(paired["model"].median()),
                    "median_p_reference": float(paired["ref"].median()),
                    "median_difference": float(np.median(diff)),
                    "statistic": stat,
                    "p_value": p,
                }
            )
    return pd.DataFrame(rows)


def read_tsv(path: str | os.PathLike, required: Sequence[str] = (), dtype: Mapping | None = None) -> pd.DataFrame:
    """Read a TSV (``dtype``: pandas' per-column types, e.g. ``{"subject": str}`` so IDs keep leading zeros); a
    missing file or column is an `InputError` naming the file."""
    try:
        frame = pd.read_csv(path, sep="\t", dtype=dtype)
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise InputError(f"{path}: cannot read ({exc})") from None
    missing = set(required) - set(frame.columns)
    if missing:
        raise InputError(f"{path}: lacks columns {sorted(missing)}")
    return frame


def model_metric_from_path(path: str | os.PathLike) -> tuple[str, str]:
    """(model, metric) of a per-model file laid out as ``.../{model}/{metric}/<file>``."""
    parts = Path(path).parts
    if len(parts) < 3:
        raise InputError(f"{path}: expected a path .../{{model}}/{{metric}}/<file>")
    return parts[-3], parts[-2]


def _write_regions(table: pd.DataFrame, out: str, source: str) -> None:
    """A regions.tsv (6 significant digits; the flags were set at full precision) and its log line."""
    with atomic_path(out) as tmp:
        table.to_csv(tmp, sep="\t", index=False, float_format="%.6g")
    log.info(
        "%s: %d regions, %d raw / %d FDR / %d Holm significant",
        source,
        len(table),
        table["significant_raw"].sum(),
        table["significant_fdr"].sum(),
        table["significant_holm"].sum(),
    )


def region_statistics_files(
    *, delta_p: str, atlas: str, wm_mask: str, regions: str, alpha: float = 0.05, scale: str = "logit"
) -> pd.DataFrame:
    """Rule test_regions: delta_p.tsv + the grid atlas/WM mask (.npy) -> regions.tsv."""
    required = ("subject", "region", "name", "p_before", "p_after", "delta_p")
    table = region_statistics(read_tsv(delta_p, required=required), np.load(atlas), np.load(wm_mask), alpha, scale)
    _write_regions(table, regions, delta_p)
    return table


def union_statistics_files(
    *, regions: Sequence[str], union: str, alpha: float = 0.05, min_models: int = 1
) -> pd.DataFrame:
    """Rule test_union: one metric's regions.tsv of every model -> the union's regions.tsv
    (``results/occlusion/union/{metric}/``), which Table 3, the truth check and the figures read."""
    keys = [model_metric_from_path(p) for p in regions]
    if len({metric for _, metric in keys}) != 1:
        raise InputError(f"{union}: the union is per metric; got region tables of {sorted({m for _, m in keys})}")
    tables = {model: read_tsv(p, required=("region", "name", "p_raw")) for (model, _), p in zip(keys, regions)}
    table = union_statistics(tables, alpha, min_models)
    _write_regions(table, union, f"union of {sorted(tables)} (at least {min_models} of them)")
    return table
