"""Tables 2 and 4: cell formatting, layout, files."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from dmriscope.io import InputError
from dmriscope.render.tables import (
    ci_cell,
    matched_cell,
    performance_cell,
    render_table2,
    render_table4,
    table4,
    table4_markdown,
)

MODELS = ["cnn2d", "vit_finetune"]
METRICS = ["FA", "MD", "MK"]


def metrics_json(auc: float, ci: list | None = None, p: float = 0.5) -> dict:
    return {
        "auc": auc,
        "auc_p": p,
        "accuracy": 0.85,
        "precision": 2 / 3,
        "recall": 0.7891,
        "auc_ci": ci,
        "ci_level": 0.95,
        "n_positive": 9,
        "n_negative": 11,
    }


def test_cells_have_three_decimals():
    assert performance_cell(metrics_json(0.91249)) == "0.912/0.850/0.667/0.789"
    assert performance_cell({**metrics_json(0.5), "auc": None}).startswith("n/a/")
    assert ci_cell(metrics_json(0.9, [0.81234, 0.99])) == "[0.812, 0.990]"
    assert ci_cell(metrics_json(0.9, None)) == "n/a"


def test_table2_files(tmp_path):
    files = []
    for i, model in enumerate(MODELS):
        for j, metric in enumerate(METRICS):
            path = tmp_path / model / metric / "metrics.json"
            path.parent.mkdir(parents=True)
            path.write_text(json.dumps(metrics_json(0.6 + 0.1 * i + 0.01 * j, [0.5, 0.7 + 0.01 * j])))
            files.append(str(path))
    render_table2(files, MODELS, METRICS, tmp_path / "t2.tsv", tmp_path / "t2.md")
    tsv = pd.read_csv(tmp_path / "t2.tsv", sep="\t")
    assert list(tsv["model"]) == MODELS
    holm = [f"{m} AUC p (Holm)" for m in METRICS]
    assert list(tsv.columns) == ["model", "name", *METRICS, *[f"{m} AUC CI" for m in METRICS], *holm]
    assert tsv.loc[1, "MD"] == "0.710/0.850/0.667/0.789"  # model-major order of the input files
    assert tsv.loc[0, "MK AUC CI"] == "[0.500, 0.720]"
    md = (tmp_path / "t2.md").read_text()
    assert "positive class = male" in md and "95% confidence intervals" in md and "9 male / 11 female" in md
    assert "| 3D ViT, MAE + fine-tuning" in md and "0.710/0.850/0.667/0.789" in md
    with pytest.raises(InputError, match="no metrics.json for vit_finetune/MK"):
        render_table2(files[:5], MODELS, METRICS, tmp_path / "x.tsv", tmp_path / "x.md")


def test_table4_layout():
    rows = [
        {"model": "cnn2d", "backbone": 11176512, "head": 30721, "total": 11207233},
        {"model": "vit", "backbone": 100, "head": 10, "total": 110},
    ]
    table = table4(rows)
    assert list(table.columns) == ["model", "name", "backbone", "head", "total"]
    md = table4_markdown(table, (180, 224, 224))
    assert "180x224x224" in md and "11,207,233" in md and "11.2" in md


def test_render_table4_from_the_registry(tmp_path):
    table = render_table4(tsv=str(tmp_path / "t4.tsv"), md=str(tmp_path / "t4.md"))
    tsv = pd.read_csv(tmp_path / "t4.tsv", sep="\t")
    assert {"cnn2d", "cnn3d", "vit"} <= set(tsv["model"])
    assert (tsv["backbone"] + tsv["head"] <= tsv["total"]).all() and (tsv["head"] > 0).all()
    assert len(table) == len(tsv)


def test_chance_check_is_holm_over_all_pairs(tmp_path):
    """Six one-sided p's, Holm by hand: 0.001 -> 0.006, 0.01 -> 0.05, 0.2 -> 0.8, the rest 1: one pair beats
    chance at a family-wise 0.05 (0.05 itself does not), though two raw p's are below it; one CI excludes 0.5."""
    raw = [0.01, 0.9, 0.2, 0.001, 0.5, 0.6]
    files = []
    for k, (model, metric) in enumerate((m, x) for m in MODELS for x in METRICS):
        path = tmp_path / model / metric / "metrics.json"
        path.parent.mkdir(parents=True)
        ci = [0.55, 0.9] if k == 3 else [0.45, 0.8]
        path.write_text(json.dumps(metrics_json(0.7, ci, raw[k])))
        files.append(str(path))
    render_table2(files, MODELS, METRICS, tmp_path / "t2.tsv", tmp_path / "t2.md")
    tsv = pd.read_csv(tmp_path / "t2.tsv", sep="\t").set_index("model")
    expected = [0.05, 1.0, 0.8, 0.006, 1.0, 1.0]
    got = [tsv.loc[m, f"{x} AUC p (Holm)"] for m in MODELS for x in METRICS]
    assert got == pytest.approx(expected)
    md = (tmp_path / "t2.md").read_text()
    assert "1 of 6 AUC CIs exclude 0.5" in md and "1 of 6 beat chance at a family-wise 0.05" in md


def test_matched_cell_says_why_it_is_empty():
    block = {"auc": 0.8123, "n_pairs": 41, "ci": [0.7, 0.9], "caliper_mm3": 1.0}
    assert matched_cell({"volume_matched": block}) == "0.812 [0.700, 0.900] (41 pairs)"
    assert matched_cell({"volume_matched": {"auc": None, "n_pairs": 0, "ci": None}}) == "no pair within the caliper"
    assert matched_cell({}) == "-"


def test_table2d_has_matched_and_partialled_columns_and_the_ceiling(tmp_path):
    files = []
    for i, model in enumerate(MODELS):
        for metric in METRICS:
            content = metrics_json(0.8, [0.7, 0.9]) | {
                "volume_matched": {"auc": None, "n_pairs": 0, "ci": None},
                "volume_partialled": {"auc": 0.5 + 0.1 * i, "ci": [0.4, 0.6 + 0.1 * i], "ceiling": 0.7312},
            }
            path = tmp_path / model / metric / "metrics.json"
            path.parent.mkdir(parents=True)
            path.write_text(json.dumps(content))
            files.append(str(path))
    render_table2(files, MODELS, METRICS, tmp_path / "t2.tsv", tmp_path / "t2.md", tmp_path / "t2.html")
    md = (tmp_path / "t2.md").read_text()
    table2d = md[md.index("**Table 2d.**") :]
    assert "| FA matched " in table2d and "| MK partialled " in table2d
    assert "no pair within the caliper" in table2d and "0.600 [0.400, 0.700]" in table2d
    assert "| ceiling (the labels themselves)" in table2d and "0.731" in table2d
    assert "Partialled" in (tmp_path / "t2.html").read_text()
