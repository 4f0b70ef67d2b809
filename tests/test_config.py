"""Configuration errors stop the run before any job, with a message naming the key."""

from __future__ import annotations

import copy
import re
import subprocess
import sys

import pytest
import yaml

from dmriscope.cohort.subjects import load_cohort, subject_ids
from dmriscope.config import ConfigError, seeds, split_counts


@pytest.fixture()
def default_config(project_root):
    return yaml.safe_load((project_root / "config.yaml").read_text())


def test_defaults_are_filled(default_config):
    config = copy.deepcopy(default_config)
    load_cohort(config)
    assert config["dki"]["max_kurtosis"] == 3.0
    assert config["registration"]["seed"] == 1
    assert len(subject_ids(config)) == config["cohort"]["n_subjects"]


@pytest.mark.parametrize(
    ("edit", "key"),
    [
        (lambda c: c["dki"].update(fit_metod="WLS"), "dki"),  # unknown (misspelt) key
        (lambda c: c["cohort"].update(n_subjects="many"), "cohort.n_subjects"),  # wrong type
        (lambda c: c["synthetic"].update(snr=-1), "synthetic.snr"),  # impossible value
        (lambda c: c["split"].update(n_train=1000), "split"),  # split larger than the cohort
        (lambda c: c.update(grid=[35, 48, 48]), "grid"),  # not divisible by 3 (cnn2d slabs)
        (lambda c: c.update(grid=[36, 40, 48]), "grid"),  # not divisible by the ViT patch
        (lambda c: c["registration"].update(backend="spm"), "registration.backend"),
        (lambda c: c["synthetic"]["sex_effects"].append({"region": 49, "size": 1}), "synthetic.sex_effects"),
        # model constraints that used to surface only inside the job that builds the model (MONAI / torch)
        (lambda c: c["models"]["vit"].update(dim=30, heads=2), "models.vit.dim"),  # the 2D sin-cos table: D % 4
        (lambda c: c["models"]["vit"].update(dim=32, heads=3), "models.vit.dim"),  # attention: D % heads
        (lambda c: c.setdefault("pretrain", {}).update(decoder_dim=20), "pretrain.decoder_dim"),  # mae3d: % 6
        (lambda c: c.setdefault("pretrain", {}).update(decoder_dim=36, decoder_heads=8), "pretrain.decoder_dim"),
        (lambda c: c.setdefault("label", {}).update(positive="F"), "label"),  # both values F
        (lambda c: c.setdefault("label", {}).update(column="group"), "label.column"),  # synthetic: sex only
        (lambda c: c["cohort"].update(age_bins=[[22, 30], [30, 37]]), "cohort.age_bins"),  # 30 in two bins
        (lambda c: c.setdefault("bids", {}).update(mask="bet"), "bids.mask"),
        (lambda c: c.setdefault("occlusion", {}).update(union_min_models=6), "occlusion.union_min_models"),  # > 5
        (lambda c: c["train"].update(model_seeds={"cnn4d": [0, 1]}), "train.model_seeds"),  # not a trained model
        (lambda c: c["train"].update(model_seeds={"cnn3d": []}), "train.model_seeds"),  # no seed
    ],
)
def test_bad_config_names_the_key(default_config, edit, key):
    config = copy.deepcopy(default_config)
    config.setdefault("synthetic", {}).setdefault("sex_effects", [{"region": 3, "size": 1.0}])
    edit(config)
    with pytest.raises(ConfigError) as info:
        load_cohort(config)
    assert f"'{key}" in str(info.value)


def test_a_model_s_own_seeds_replace_the_shared_ones(default_config):
    config = copy.deepcopy(default_config)
    config["train"].update(seeds=[0, 1, 2], model_seeds={"cnn3d": [0, 1, 2, 3, 4]})
    load_cohort(config)
    assert seeds(config, "cnn3d") == ["0", "1", "2", "3", "4"]
    assert seeds(config, "cnn2d") == seeds(config) == ["0", "1", "2"]
    config["train"].update(seeds=None, model_seeds={})
    assert seeds(config, "cnn3d") == [str(config["train"]["seed"])]


def test_paper_proportions_when_counts_missing():
    config = {"split": {"n_train": None, "n_val": None, "n_test": None}}
    assert split_counts(config, 1031) == (831, 100, 100)


def test_snakemake_stops_before_any_job(project_root, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("cohort:\n  n_subjects: 10\nsplit:\n  n_train: 20\n  n_val: 2\n  n_test: 2\n")
    result = subprocess.run(
        [sys.executable, "-m", "snakemake", "-n", "--configfile", str(bad), "--directory", str(tmp_path)],
        cwd=project_root,
        capture_output=True,
        text=True,
    )
    assert result.returncode != 0
    assert "config key 'split'" in result.stderr + result.stdout
    assert not (tmp_path / "results").exists()


def test_building_the_dag_does_not_import_torch(project_root):
    """Every dmriscope module the rules files import at DAG-build time stays free of torch, MONAI and dipy (torch
    alone costs ~1.6 s of CPU per DAG build); the config checks too."""
    modules = set()
    for rules in [project_root / "Snakefile", *sorted((project_root / "rules").glob("*.smk"))]:
        modules |= set(re.findall(r"^\s*from (dmriscope[\w.]*) import", rules.read_text(), flags=re.M))
    assert "dmriscope.config" in modules
    code = (
        f"import sys, yaml; [__import__(m) for m in {sorted(modules)!r}]; from dmriscope.config import load_config; "
        "load_config(yaml.safe_load(open('config.yaml'))); "
        "heavy = [m for m in ('torch', 'monai', 'dipy') if m in sys.modules]; assert not heavy, heavy"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=project_root, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-500:]
