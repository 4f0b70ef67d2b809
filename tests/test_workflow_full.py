"""The whole DAG on configs/ci.yaml: every table, figure and the HTML report; a killed training job resumes."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time

import pandas as pd
import pytest
from conftest import snakemake_command

pytestmark = pytest.mark.workflow
MODELS = ("cnn2d", "cnn3d", "vit_scratch", "vit_linprobe", "vit_finetune")
METRICS = ("FA", "MD", "MK")


def test_table2_has_every_model_and_metric(ci_run):
    table = pd.read_csv(ci_run / "results/tables/table2_performance.tsv", sep="\t")
    assert list(table["model"]) == [*MODELS, "region_means", "size_only"]  # the two yardsticks last
    for metric in METRICS:
        cells = table[metric].str.split("/", expand=True).astype(float)
        assert cells.shape[1] == 4 and cells.ge(0).all().all() and cells.le(1).all().all()
    for model in MODELS:
        metrics = json.loads((ci_run / f"results/models/{model}/FA/metrics.json").read_text())
        low, high = metrics["auc_ci"]
        assert low <= metrics["auc"] <= high
        assert metrics["positive_class"].lower().startswith("m")


def test_table4_counts_are_the_papers(ci_run):
    table = pd.read_csv(ci_run / "results/tables/table4_parameters.tsv", sep="\t").set_index("model")
    assert table.loc["cnn2d", "total"] == 11_207_233
    assert table.loc["cnn3d", "total"] == 14_356_546
    assert table.loc["vit", "total"] == 24_144_002


def test_occlusion_tables_and_figures(ci_run):
    for model in MODELS:
        for metric in METRICS:
            regions = pd.read_csv(ci_run / f"results/occlusion/{model}/{metric}/regions.tsv", sep="\t")
            assert len(regions) == 48
            assert regions[["p_raw", "p_fdr", "p_holm"]].stack().between(0, 1).all()
            assert (regions["p_fdr"] >= regions["p_raw"] - 1e-12).all()
    for name in ("table1_cohort", "table3_regions", "model_comparison", "truth_check"):
        assert (ci_run / f"results/tables/{name}.md").stat().st_size > 100
    for metric in METRICS:
        for kind in ("significant", "heatmap"):
            assert (ci_run / f"results/figures/regions/{metric}_{kind}.png").stat().st_size > 5000
        assert (ci_run / f"results/figures/pretrain/fold0/{metric}_reconstruction.png").stat().st_size > 5000


def test_html_report(project_root, ci_run):
    command = snakemake_command(project_root, ci_run, "--report", str(ci_run / "report.html"))
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    html = (ci_run / "report.html").read_text(errors="replace")
    for name in ("table1_cohort", "table2_performance", "table3_regions", "table4_parameters", "significant.png"):
        assert name in html, name


def test_killed_training_resumes_from_its_last_epoch(project_root, ci_run, tmp_path):
    """Kill a training job mid-run (SIGKILL to Snakemake and the job); --rerun-incomplete continues after epoch k."""
    workdir = tmp_path / "resume"
    shutil.copytree(ci_run / "results", workdir / "results")
    shutil.rmtree(workdir / "results" / "models")
    extra = tmp_path / "long.yaml"
    extra.write_text("train:\n  epochs: 300\n  patience: 1000\n")
    target = "results/models/cnn2d/FA/fold0/seed0/best.pt"
    command = snakemake_command(project_root, workdir, target, extra_config=extra)
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    last = workdir / "results/checkpoints/cnn2d/FA/fold0/seed0/last.pt"
    deadline = time.time() + 300
    while not last.exists() and time.time() < deadline and process.poll() is None:
        time.sleep(0.2)
    time.sleep(1.0)  # a few more epochs
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    assert last.exists(), "no checkpoint was written before the kill"
    assert not (workdir / target).exists(), "training finished before it could be killed: raise the epochs"

    # a SIGKILLed Snakemake leaves its lock behind: the user unlocks, then re-runs the incomplete job
    unlock = subprocess.run(snakemake_command(project_root, workdir, "--unlock", extra_config=extra), timeout=300)
    assert unlock.returncode == 0
    result = subprocess.run(
        snakemake_command(project_root, workdir, target, "--rerun-incomplete", extra_config=extra),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    log = (workdir / "logs/train_model/cnn2d/FA/fold0_seed0.log").read_text()
    assert "resuming from" in log
    resumed_after = int(log.split("resuming from")[1].split("after epoch")[1].split()[0])
    assert 1 <= resumed_after < 300
    lines = (workdir / "results/models/cnn2d/FA/fold0/seed0/history.jsonl").read_text().splitlines()
    history = [json.loads(line) for line in lines]
    assert [r["epoch"] for r in history] == list(range(1, 301))
