"""The DAG with split.scheme kfold and a seed ensemble at ci scale, and training that repeats itself exactly."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pandas as pd
import pytest
from conftest import snakemake_command

pytestmark = pytest.mark.workflow
METRICS = ("FA", "MD", "MK")
KFOLD = """split:
  scheme: kfold
  folds: 2
  n_val: 3
train:
  models: [cnn2d, vit_finetune]
  seeds: [0, 1]
"""


def reuse_preprocessing(ci_run: Path, workdir: Path) -> None:
    """The ci run's per-subject outputs (registered maps, template, participants), nothing split-dependent."""
    for name in ("cohort", "template", "registered", "qc", "truth", "dki", "raw"):
        if (ci_run / "results" / name).exists():
            shutil.copytree(ci_run / "results" / name, workdir / "results" / name)


@pytest.fixture(scope="module")
def kfold_run(project_root, ci_run, tmp_path_factory) -> Path:
    workdir = tmp_path_factory.mktemp("ci_kfold")
    reuse_preprocessing(ci_run, workdir)
    extra = workdir / "kfold.yaml"
    extra.write_text(KFOLD)
    command = snakemake_command(project_root, workdir, "--rerun-triggers", "mtime", extra_config=extra)
    result = subprocess.run(command, capture_output=True, text=True, timeout=1800)
    assert result.returncode == 0, result.stderr[-4000:]
    assert "synthesize_subject" not in result.stderr  # the preprocessing was reused, not rerun
    return workdir


def test_every_subject_tested_once_by_its_own_fold(kfold_run):
    split = pd.read_csv(kfold_run / "results/split/split.tsv", sep="\t", dtype={"subject": str})
    assert set(split["set"]) == {"cv"} and sorted(split["fold"].unique()) == [0, 1]
    for model in ("cnn2d", "vit_finetune"):
        for metric in METRICS:
            pooled = pd.read_csv(
                kfold_run / f"results/models/{model}/{metric}/predictions.tsv", sep="\t", dtype={"subject": str}
            )
            assert sorted(pooled["subject"]) == sorted(split["subject"])  # all 16, once each
            merged = pooled.merge(split[["subject", "fold"]], on="subject", suffixes=("", "_split"))
            assert (merged["fold"] == merged["fold_split"]).all()
            for fold in (0, 1):
                runs = [
                    pd.read_csv(
                        kfold_run / f"results/models/{model}/{metric}/fold{fold}/seed{s}/predictions.tsv",
                        sep="\t",
                        dtype={"subject": str},
                    )
                    for s in (0, 1)
                ]
                mine = pooled[pooled["fold"] == fold].set_index("subject").loc[runs[0]["subject"]]
                mean = (runs[0]["p_positive"].to_numpy() + runs[1]["p_positive"].to_numpy()) / 2
                assert abs(mine["p_positive"].to_numpy() - mean).max() < 1e-6  # the seed ensemble's mean
            delta = pd.read_csv(
                kfold_run / f"results/occlusion/{model}/{metric}/delta_p.tsv", sep="\t", dtype={"subject": str}
            )
            assert sorted(delta["subject"].unique()) == sorted(split["subject"])


def test_folds_never_train_on_their_test_subjects(kfold_run):
    for fold in (0, 1):
        table = pd.read_csv(kfold_run / f"results/split/fold{fold}.tsv", sep="\t", dtype={"subject": str})
        index = pd.read_csv(kfold_run / f"results/tensors/fold{fold}/FA_index.tsv", sep="\t", dtype={"subject": str})
        assert index.set_index("subject")["set"].equals(table.set_index("subject").loc[index["subject"], "set"])
        norm = json.loads((kfold_run / f"results/tensors/fold{fold}/FA_norm.json").read_text())
        assert norm["n_subjects"] == (table["set"] == "train").sum()
        hparams = json.loads((kfold_run / f"results/models/cnn2d/FA/fold{fold}/seed1/hparams.json").read_text())
        assert hparams["seed"] == 1 and hparams["n_train"] == (table["set"] == "train").sum()


def test_tables_report_the_spread(kfold_run):
    table = pd.read_csv(kfold_run / "results/tables/table2_performance.tsv", sep="\t")
    assert list(table["model"]) == ["cnn2d", "vit_finetune", "region_means", "size_only"]
    models = table[~table["model"].isin(["region_means", "size_only"])]
    assert (
        models["FA fold AUC"].str.endswith("(2 folds)").all() and models["MK seed AUC"].str.endswith("(2 seeds)").all()
    )
    markdown = (kfold_run / "results/tables/table2_performance.md").read_text()
    assert "out of fold" in markdown and "Table 2c" in markdown
    table1 = (kfold_run / "results/tables/table1_cohort.md").read_text()
    assert "fold 1 male" in table1 and "fold 2 female" in table1
    pretraining = pd.read_csv(kfold_run / "results/tables/pretraining.tsv", sep="\t")
    assert sorted(pretraining["fold"].unique()) == [0, 1] and len(pretraining) == 3 * 2 * 2
    assert (kfold_run / "results/tables/truth_check.md").exists()


def test_another_seed_or_model_trains_only_what_is_new(project_root, kfold_run, tmp_path):
    """Adding a seed and a model to a finished run schedules only their trainings (Snakemake's default rerun
    triggers, params included): train_model's params hold one training's settings, not the lists of models/seeds."""
    extra = tmp_path / "more.yaml"
    extra.write_text(
        KFOLD.replace("seeds: [0, 1]", "seeds: [0, 1, 2]").replace("vit_finetune]", "vit_finetune, cnn3d]")
    )
    result = subprocess.run(
        snakemake_command(project_root, kfold_run, "-n", extra_config=extra),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    log = result.stdout + result.stderr
    trained = re.findall(r"rule train_model:.*?wildcards: model=(\w+), metric=\w+, fold=\d+, seed=(\d+)", log, re.S)
    assert len(trained) == 2 * 3 * 2 + 1 * 3 * 2 * 3  # seed 2 of the two models, and cnn3d with three seeds
    assert all(seed == "2" or model == "cnn3d" for model, seed in trained)


def test_same_seed_same_machine_same_metrics(project_root, ci_run, tmp_path):
    """Retraining from scratch on the same inputs reproduces the ci run's test metrics exactly, CNNs and ViT."""
    workdir = tmp_path / "again"
    shutil.copytree(ci_run / "results", workdir / "results")
    shutil.rmtree(workdir / "results" / "models")
    targets = [f"results/models/{m}/FA/metrics.json" for m in ("cnn2d", "cnn3d", "vit_scratch")]
    command = snakemake_command(project_root, workdir, *targets, "--rerun-triggers", "mtime")  # a list flag: last
    result = subprocess.run(command, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    for target in targets:
        assert (workdir / target).read_bytes() == (ci_run / target).read_bytes(), target
