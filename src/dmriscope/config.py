"""Configuration: schema validation (defaults filled from the schema) and the checks a schema cannot express.

`load_config` is what rules/common.smk calls; every failure is a `ConfigError` whose message names the key.
"""

from __future__ import annotations

import math
from pathlib import Path

SCHEMA = Path(__file__).resolve().parents[2] / "schemas" / "config.schema.yaml"
PAPER_SPLIT = (831, 100, 100)  # train / val / test of 1031 subjects
METRICS = ("FA", "MD", "MK")
# workflow model name -> registry name; the vit_* variants differ only in initialisation and which parts train.
# Here, not beside the engine, so that building the DAG (rules/common.smk) never imports torch.
REGISTRY_NAMES = {
    "cnn2d": "cnn2d",
    "cnn3d": "cnn3d",
    "vit_scratch": "vit",
    "vit_linprobe": "vit",
    "vit_finetune": "vit",
}
PRETRAINED = ("vit_linprobe", "vit_finetune")
WORKFLOW_MODELS = tuple(REGISTRY_NAMES)


class ConfigError(ValueError):
    """A configuration problem; the message starts with the offending key."""


def validate_schema(config: dict, schema: str | Path = SCHEMA) -> dict:
    """Validate `config` in place against the JSON schema and fill defaults; raise `ConfigError` naming the key."""
    import jsonschema
    from snakemake.utils import validate

    try:
        validate(config, str(schema), set_default=True)
    except Exception as exc:  # snakemake wraps jsonschema.ValidationError in WorkflowError
        cause = exc
        while cause is not None and not isinstance(cause, jsonschema.ValidationError):
            cause = cause.__cause__ or cause.__context__
        if cause is None:
            raise ConfigError(f"config: {exc}") from None
        key = ".".join(str(p) for p in cause.absolute_path) or "<top level>"
        raise ConfigError(f"config key '{key}': {cause.message}") from None
    return config


def split_counts(config: dict, n_subjects: int) -> tuple[int, int, int]:
    """Train/val/test counts: from config, or the paper's 831/100/100 proportions scaled to the cohort."""
    split = config["split"]
    given = [split["n_train"], split["n_val"], split["n_test"]]
    if all(v is None for v in given):
        n_val = max(2, round(n_subjects * PAPER_SPLIT[1] / sum(PAPER_SPLIT)))
        n_test = max(2, round(n_subjects * PAPER_SPLIT[2] / sum(PAPER_SPLIT)))
        if n_subjects - n_val - n_test < 2:
            raise ConfigError(f"config key 'split': a cohort of {n_subjects} is too small to split (need at least 6)")
        return n_subjects - n_val - n_test, n_val, n_test
    if any(v is None for v in given):
        raise ConfigError("config key 'split': give all of n_train, n_val, n_test or none of them")
    if sum(given) > n_subjects:
        raise ConfigError(
            f"config key 'split': n_train + n_val + n_test = {sum(given)} is larger than the cohort ({n_subjects})"
        )
    return tuple(given)  # type: ignore[return-value]


def folds(config: dict) -> list[str]:
    """The fold labels of the split scheme: ``["0"]`` for holdout (one fold: the split), ``"0"..`` for kfold."""
    split = config["split"]
    return [str(k) for k in range(split["folds"] if split["scheme"] == "kfold" else 1)]


def seeds(config: dict, model: str | None = None) -> list[str]:
    """The training seeds of ``model`` (as strings, for wildcards): ``train.model_seeds[model]`` when given, else
    ``train.seeds``, else ``[train.seed]``; without a model, the models' shared seeds."""
    train = config["train"]
    own = (train.get("model_seeds") or {}).get(model) if model else None
    return [str(s) for s in (own or train["seeds"] or [train["seed"]])]


def inner_val_count(config: dict, n_subjects: int) -> int:
    """kfold: the validation subjects held out of each fold's training part (split.n_val, or the paper's share)."""
    n_val = config["split"]["n_val"]
    n_val = n_val if n_val is not None else max(2, round(n_subjects * PAPER_SPLIT[1] / sum(PAPER_SPLIT)))
    k = config["split"]["folds"]
    n_rest = n_subjects - -(-n_subjects // k)  # the smallest training part: all but the largest fold
    if n_rest - n_val < 2:
        raise ConfigError(
            f"config key 'split.n_val': {n_val} validation subjects leave fewer than 2 to train on in a fold of "
            f"{n_subjects} subjects in {k} folds"
        )
    return n_val


def check_grid(config: dict) -> None:
    """The model grid must suit the models: slices divisible by 3 (cnn2d slabs) and the ViT patch; in-plane too."""
    grid = config["grid"]
    patch = config.get("models", {}).get("vit", {}).get("patch", [6, 16, 16])
    if grid[0] % 3:
        raise ConfigError(f"config key 'grid': {grid[0]} sagittal slices are not divisible by 3 (cnn2d slabs)")
    for axis, (size, p) in enumerate(zip(grid, patch)):
        if size % p:
            raise ConfigError(f"config key 'grid': axis {axis} size {size} is not divisible by the ViT patch {p}")


def check_models(config: dict) -> None:
    """Constraints of the ViT and the MAE that the schema cannot express, checked before any job runs.

    Attention splits D over the heads (D % heads); the 2D slab encoder of the MAE starts from a 2D sin-cos table
    (D % 4, MONAI) and its decoders use 2D and 3D sin-cos tables (decoder_dim % 4 and % 6) over decoder_heads heads.
    """
    vit = config["models"]["vit"]
    if vit["dim"] % vit["heads"]:
        raise ConfigError(
            f"config key 'models.vit.dim': {vit['dim']} is not divisible by models.vit.heads {vit['heads']}"
        )
    if not {"vit_linprobe", "vit_finetune"} & set(config["train"]["models"]):
        return
    if vit["dim"] % 4:
        raise ConfigError(
            f"config key 'models.vit.dim': {vit['dim']} must be divisible by 4 (the 2D MAE's sin-cos table)"
        )
    pre = config["pretrain"]
    if pre["decoder_dim"] % pre["decoder_heads"]:
        raise ConfigError(
            f"config key 'pretrain.decoder_dim': {pre['decoder_dim']} is not divisible by pretrain.decoder_heads "
            f"{pre['decoder_heads']}"
        )
    if pre["decoder_dim"] % 12:
        raise ConfigError(
            f"config key 'pretrain.decoder_dim': {pre['decoder_dim']} must be divisible by 12 (the 2D and 3D MAE "
            "decoders' sin-cos tables need multiples of 4 and 6)"
        )


def check_synthetic(config: dict) -> None:
    syn = config["synthetic"]
    for sex, fractions in config["cohort"]["age_bin_fractions"].items():
        if not math.isclose(sum(fractions), 1.0, abs_tol=1e-3):
            raise ConfigError(f"config key 'cohort.age_bin_fractions.{sex}': fractions sum to {sum(fractions)}, not 1")
    for key in ("sex_effects", "age_effects"):
        regions = [e["region"] for e in syn[key]]
        if len(set(regions)) != len(regions):
            raise ConfigError(f"config key 'synthetic.{key}': a region is listed twice")


def check_label(config: dict) -> None:
    """The label's two values differ; age bins do not overlap; the synthetic cohort's label is sex (it plants sex
    effects; configs/bids-export.yaml turns them into a group)."""
    label = config["label"]
    if str(label["positive"]).casefold() == str(label["negative"]).casefold():
        raise ConfigError(f"config key 'label': positive and negative are both {label['positive']!r}")
    if config["cohort"]["source"] != "bids" and label["column"] != "sex":
        raise ConfigError(
            f"config key 'label.column': {label['column']!r} needs cohort.source bids (synthetic and HCP cohorts are "
            "labelled by sex; export_bids writes a synthetic cohort with a group column)"
        )
    edges = sorted(tuple(b) for b in config["cohort"]["age_bins"])
    for k, (low, high) in enumerate(edges):
        if low > high or (k + 1 < len(edges) and high >= edges[k + 1][0]):
            raise ConfigError(f"config key 'cohort.age_bins': [{low}, {high}] is empty or overlaps the next bin")


def check_tensors(config: dict) -> None:
    """Confound regression corrects voxel by voxel, so it goes with the voxel normalisation."""
    tensors = config["tensors"]
    if tensors["regress_out"] is not None and tensors["normalisation"] != "voxel":
        raise ConfigError(
            f"config key 'tensors.regress_out': {tensors['regress_out']} needs tensors.normalisation voxel, "
            f"not {tensors['normalisation']}"
        )


def check_model_seeds(config: dict) -> None:
    """``train.model_seeds`` may only name models that are trained."""
    unknown = sorted(set(config["train"].get("model_seeds") or {}) - set(config["train"]["models"]))
    if unknown:
        raise ConfigError(
            f"config key 'train.model_seeds': {', '.join(unknown)} not in train.models "
            f"({', '.join(config['train']['models'])})"
        )


def check_occlusion(config: dict) -> None:
    """The union over models cannot ask for more models than are trained."""
    need, models = config["occlusion"]["union_min_models"], config["train"]["models"]
    if need > len(models):
        raise ConfigError(
            f"config key 'occlusion.union_min_models': {need} is more than the {len(models)} train.models "
            "(lower it, e.g. to 1, or train more models; configs/seeds-3.yaml sets 2)"
        )


def load_config(config: dict) -> dict:
    """Validate and complete the config in place; return it."""
    validate_schema(config)
    check_grid(config)
    check_models(config)
    check_synthetic(config)
    check_label(config)
    check_tensors(config)
    check_model_seeds(config)
    check_occlusion(config)
    return config


def check_split_sizes(config: dict, n_subjects: int) -> None:
    """ConfigError naming `split` / `split.folds` when the split does not fit a cohort of `n_subjects`
    (`dmriscope.cohort.subjects.load_cohort` calls it once the subjects are known)."""
    if config["split"]["scheme"] == "kfold":
        if config["split"]["folds"] > n_subjects // 2:
            raise ConfigError(
                f"config key 'split.folds': {config['split']['folds']} folds of {n_subjects} subjects leave fewer "
                "than 2 test subjects per fold"
            )
        inner_val_count(config, n_subjects)
    else:
        split_counts(config, n_subjects)
