"""train_model's rule params hold what one training depends on, so Snakemake retrains exactly what changed."""

from __future__ import annotations

import copy

import pytest
import yaml

from dmriscope.config import load_config
from dmriscope.io import InputError
from dmriscope.train_settings import TrainSettings, model_arch, rule_models_params, rule_train_params


@pytest.fixture(scope="module")
def config(project_root):
    return load_config(yaml.safe_load((project_root / "config.yaml").read_text()))


def params(config, model, seed=0):
    return rule_train_params(config["train"], model, seed), rule_models_params(config["models"], model)


def changed(config, **train):
    other = copy.deepcopy(config)
    other["train"].update(train)
    return other


def test_params_give_the_same_settings_and_architecture(config):
    for model in config["train"]["models"]:
        train, models = params(config, model, seed=2)
        expected = TrainSettings.from_config({**config["train"], "seed": 2}, model)
        assert TrainSettings.from_config(train, model) == expected
        assert model_arch(model, models) == model_arch(model, config["models"])


@pytest.mark.parametrize(
    "edit",
    [
        {"seeds": [0, 1, 2, 3]},  # another seed
        {"models": ["cnn2d", "cnn3d"]},  # fewer models
        {"mem_mb": 123, "runtime": 7},  # the job's resources
        {"bootstrap_resamples": 50, "ci_level": 0.9},  # the summary's statistics
        {"overrides": {"vit_finetune": {"lr": 0.5}}},  # another model's override
        {"model_seeds": {"cnn3d": [0, 1, 2, 3, 4]}},  # another model's seeds
    ],
)
def test_what_a_training_does_not_read_leaves_its_params(config, edit):
    assert params(changed(config, **edit), "cnn2d") == params(config, "cnn2d")


def test_what_a_training_reads_changes_its_params(config):
    base = params(config, "vit_finetune")
    assert params(changed(config, epochs=3), "vit_finetune") != base
    assert params(changed(config, lr=1e-2), "vit_finetune") == base  # its own override sets its lr
    assert params(changed(config, overrides={"vit_finetune": {"lr": 0.5}}), "vit_finetune") != base
    assert params(config, "vit_finetune", seed=1) != base
    wider = copy.deepcopy(config)
    wider["models"]["vit"]["dim"] = 192
    assert params(wider, "vit_finetune") != base
    assert params(wider, "cnn2d") == params(config, "cnn2d")  # the ViT's width is not the CNN's business


def test_probe_pool_is_the_linear_probe_s_alone():
    models = {"vit": {"dim": 96, "pool": "mean", "probe_pool": "tokens"}}
    assert model_arch("vit_linprobe", models) == {"dim": 96, "pool": "tokens", "head_norm": True}
    assert model_arch("vit_finetune", models) == {"dim": 96, "pool": "mean"}  # no unknown keyword for build_vit
    assert model_arch("vit_linprobe", {"vit": {"pool": "mean"}})["pool"] == "mean"  # unset: the ViTs' pool
    other = {"vit": {**models["vit"], "probe_pool": "cls"}}
    assert rule_models_params(other, "vit_scratch") == rule_models_params(models, "vit_scratch")  # not retrained
    assert rule_models_params(other, "vit_linprobe") != rule_models_params(models, "vit_linprobe")


def test_unknown_override_key_names_it(config):
    with pytest.raises(InputError, match="train.overrides.cnn2d"):
        rule_train_params({**config["train"], "overrides": {"cnn2d": {"learning_rate": 1}}}, "cnn2d", 0)
