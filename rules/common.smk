# Configuration validation, the subject and model lists, input functions and wildcard constraints.
# Stage files hold rules only.
import math
import sys

from dmriscope.cohort.subjects import load_cohort
from dmriscope.config import (
    METRICS,
    WORKFLOW_MODELS,
    ConfigError,
    folds,
    inner_val_count,
    seeds,
    split_counts,
)
from dmriscope.train_settings import rule_models_params, rule_train_params

try:
    SUBJECTS = load_cohort(config)
except ConfigError as exc:
    sys.exit(f"dmriscope: {exc}")

MODELS = list(config["train"]["models"])
SYNTHETIC = config["cohort"]["source"] == "synthetic"
# the planted truth the occlusion findings are checked against: the simulation's, or a known one (truth.planted)
PLANTED = (
    "results/truth/planted_regions.tsv" if SYNTHETIC else config["truth"]["planted"]
)
KFOLD = config["split"]["scheme"] == "kfold"
FOLDS = folds(config)  # ["0"] for holdout: the split is the one fold
# training seeds: seeds(config, model), per model (train.model_seeds, else train.seeds)


wildcard_constraints:
    subject="[A-Za-z0-9]+",
    metric="|".join(METRICS),
    model="|".join(WORKFLOW_MODELS),
    fold="[0-9]+",
    seed="[0-9]+",


def synthesize_mem_mb(wildcards, attempt=1):
    """synthesize_subject's memory: the float32 DWI (native voxels x 288 volumes x 4 bytes) 1.6 times over (peak RSS
    6.5 GB at HCP's 1.25 mm geometry on a 1 mm template, configs/paper-scale.yaml), at least 1500 MB.
    """
    syn = config["synthetic"]
    # dmriscope.cohort.synthetic.native_voxel_mm's rule, not imported: that module pulls scipy into every DAG build
    native = syn["native_voxel_mm"] or syn["voxel_mm"]
    voxels = math.prod(n * syn["voxel_mm"] / native for n in syn["template_shape"])
    return attempt * max(1500, int(1.6 * voxels * 288 * 4 / 2**20))


def harmonise_template(wildcards):
    """fit_dki's template input: the template FA (its brain volume) only where dki.harmonise is on."""
    if config["dki"]["harmonise"]["psf_mm"] is None:
        return []
    return "results/template/template_FA.nii.gz"


def registered_maps(wildcards=None):
    """Every subject's FA, MD and MK in template space."""
    return expand(
        "results/registered/sub-{subject}/{metric}.nii.gz",
        subject=SUBJECTS,
        metric=METRICS,
    )


def model_outputs(pattern):
    return expand(pattern, model=MODELS, metric=METRICS)


def replicates(pattern):
    """Input function: ``pattern`` for every fold x seed of the job's model x metric (its own seeds, seeds())."""

    def files(wildcards):
        return expand(
            pattern,
            fold=FOLDS,
            seed=seeds(config, wildcards.model),
            model=wildcards.model,
            metric=wildcards.metric,
        )

    return files


def replicate_runs(wildcards):
    """The [fold, seed] pairs of the job's model, in the order `replicates` lists their files."""
    return [[fold, seed] for fold in FOLDS for seed in seeds(config, wildcards.model)]


# The tensor stage's files, named once: rules/tensors.smk writes them, training, pretraining and occlusion read them.
STORE = "results/tensors/{metric}.npy"
STORE_INDEX = "results/tensors/{metric}_index.tsv"
GRID_ATLAS = "results/tensors/atlas.npy"
GRID_LABELS = "results/tensors/atlas_labels.tsv"
GRID_WM_MASK = "results/tensors/wm_mask.npy"
GRID_BRAIN_MASK = "results/tensors/brain_mask.npy"
FOLD_INDEX = "results/tensors/fold{fold}/{metric}_index.tsv"
FOLD_NORM = "results/tensors/fold{fold}/{metric}_norm.json"
FOLD_NORM_VOXELS = "results/tensors/fold{fold}/{metric}_norm.npy"


def fold_tensors():
    """The fold's view of a metric's store: the store, the fold's index and training-set normalisation."""
    return {
        "tensor": STORE,
        "index": FOLD_INDEX,
        "norm": FOLD_NORM,
        "norm_voxels": FOLD_NORM_VOXELS,
        "brain_mask": GRID_BRAIN_MASK,
    }


def get_final_output():
    """What `rule all` asks for, up to `stages.until` (registration < split < train < occlusion < report)."""
    until = config["stages"]["until"]
    outputs = ["results/cohort/participants.tsv", *registered_maps()]
    outputs += expand("results/qc/registration/sub-{subject}.png", subject=SUBJECTS)
    if until == "registration":
        return outputs
    outputs += [
        "results/split/split.tsv",
        "results/tables/table1_cohort.md",
        "results/tables/table1b_volume.md",
    ]
    if until == "split":
        return outputs
    outputs += model_outputs("results/models/{model}/{metric}/metrics.json")
    outputs += [
        "results/tables/table1c_smoothness.md",
        "results/tables/table2_performance.md",
        "results/tables/table4_parameters.md",
    ]
    if any(m in MODELS for m in ("vit_linprobe", "vit_finetune")):
        outputs += expand(
            "results/figures/pretrain/fold{fold}/{metric}_reconstruction.png",
            metric=METRICS,
            fold=FOLDS,
        )
        outputs += ["results/tables/pretraining.md"]
    if until == "train":
        return outputs
    outputs += model_outputs("results/occlusion/{model}/{metric}/regions.tsv")
    outputs += ["results/tables/table3_regions.md"]
    if config["occlusion"]["reference_model"] in MODELS:
        outputs += ["results/tables/model_comparison.md"]
    if PLANTED:
        outputs += ["results/tables/truth_check.md"]
    if until == "occlusion":
        return outputs
    outputs += expand(
        "results/figures/regions/{metric}_{kind}.png",
        metric=METRICS,
        kind=["significant", "heatmap"],
    )
    return outputs
