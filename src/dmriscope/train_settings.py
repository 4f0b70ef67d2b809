"""Training settings: the config's ``train`` section (per-model overrides merged in) and a model's architecture."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

from dmriscope.config import REGISTRY_NAMES
from dmriscope.io import InputError


def arch_section(model_name: str) -> str:
    """``model_name``'s registry model, which is also the ``models`` config section of its architecture (the ViT
    variants share ``vit``)."""
    return REGISTRY_NAMES.get(model_name, model_name)


def model_arch(model_name: str, models_cfg: Mapping[str, Any]) -> dict[str, Any]:
    """The architecture keywords of ``model_name``: its registry model's config section; the linear probe adds a
    feature BatchNorm before its head (MAE's linear-probing recipe, no parameter: `models.vit.ViTClassifier`) and
    reads ``models.vit.probe_pool`` (default: the other ViTs' ``pool``)."""
    arch = dict(models_cfg.get(arch_section(model_name), {}))
    probe_pool = arch.pop("probe_pool", None)
    if model_name == "vit_linprobe":
        arch["head_norm"] = True
        if probe_pool is not None:
            arch["pool"] = probe_pool
    return arch


@dataclass(frozen=True)
class TrainSettings:
    """Optimiser, schedule and loop settings (config ``train``; per-model ``overrides`` merged in).

    Attributes:
        epochs: maximum number of epochs.
        batch_size: subjects per optimiser step.
        lr: peak learning rate of AdamW (after warm-up).
        weight_decay: AdamW decoupled weight decay (not applied to biases and norm weights, ndim <= 1).
        patience: stop after this many epochs without a better validation AUC (counted after the warm-up).
        warmup_epochs: linear warm-up from 0 to ``lr`` over this many epochs, then cosine decay; model selection
            starts after the warm-up (`dmriscope.engine.selection_start`).
        min_lr_ratio: the cosine ends at ``lr * min_lr_ratio``.
        seed: seeds weights, shuffling, dropout and augmentation.
        augment_shift: maximum random shift in voxels per axis (0 = no augmentation).
        augment_occlude: probability that a training volume gets 1-3 random atlas regions occluded as in
            `dmriscope.occlusion` (set to the volume's mean white-matter value); 0 = off.
        grad_clip: clip the global gradient norm to this (0 = off).
        num_workers: DataLoader worker processes.
    """

    epochs: int = 30
    batch_size: int = 8
    lr: float = 3e-4
    weight_decay: float = 0.05
    patience: int = 10
    warmup_epochs: int = 2
    min_lr_ratio: float = 0.01
    seed: int = 0
    augment_shift: int = 0
    augment_occlude: float = 0.0
    grad_clip: float = 1.0
    num_workers: int = 0

    @classmethod
    def from_config(cls, train: Mapping[str, Any], model: str) -> TrainSettings:
        """Settings for ``model`` from the ``train`` config section: top-level values, then ``overrides[model]``."""
        names = {f.name for f in fields(cls)}
        values = {k: v for k, v in train.items() if k in names}
        values.update(train.get("overrides", {}).get(model, {}))
        unknown = set(values) - names
        if unknown:
            raise InputError(f"config key 'train.overrides.{model}': unknown keys {sorted(unknown)}")
        return cls(**values)


def settings_dict(settings: TrainSettings) -> dict:
    return asdict(settings)


def rule_train_params(train_cfg: Mapping[str, Any], model: str, seed: int | str) -> dict:
    """The ``train`` params of one train_model job: ``model``'s resolved settings for ``seed`` and nothing else.

    Rule params are what Snakemake compares to decide that a finished job is out of date, so they hold only what the
    training depends on. The whole ``train`` section there (the list of models and seeds, other models' overrides,
    memory and runtime, the bootstrap settings of the summary) made adding a seed or a model retrain every model
    already trained. Passing the result back through `TrainSettings.from_config` gives the same settings.
    """
    return settings_dict(TrainSettings.from_config({**train_cfg, "seed": int(seed)}, model))


def rule_models_params(models_cfg: Mapping[str, Any], model: str) -> dict:
    """The ``models`` params of one train_model job: the one config section `model_arch` reads for ``model``
    (without ``probe_pool`` where ``model`` is not the linear probe)."""
    name = arch_section(model)
    section = dict(models_cfg.get(name, {}))
    if model != "vit_linprobe":
        section.pop("probe_pool", None)  # read by the linear probe alone: changing it retrains nothing else
    return {name: section}
