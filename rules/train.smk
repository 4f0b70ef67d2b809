# Training and test-set evaluation of every model on every metric, once per fold (the holdout split is fold 0) and
# seed; summarise_model pools the runs of a model x metric (folds concatenated, seeds averaged) into the reported
# predictions and metrics; fit_size_baseline (brain volume alone) and fit_region_baseline (48 region
# means per metric) are the yardsticks. The resume
# state lives in results/checkpoints/{model}/{metric}/fold{fold}/seed{seed}/
# (not a declared output: Snakemake deletes those before re-running an incomplete job). GPU profiles add `gpu: 1`
# to train_model (CUDA + bf16 autocast are picked up automatically).

RUN = "results/models/{model}/{metric}/fold{fold}/seed{seed}"


rule train_model:
    input:
        **fold_tensors(),
        atlas=GRID_ATLAS,
        wm_mask=GRID_WM_MASK,
        split_digest="results/split/split.sha256",
        pretrained=branch(
            evaluate("{model} in ('vit_linprobe', 'vit_finetune')"),
            then="results/pretrain/{metric}/fold{fold}/mae3d.pt",
        ),
    output:
        best=f"{RUN}/best.pt",
        history=f"{RUN}/history.jsonl",
        hparams=f"{RUN}/hparams.json",
    log:
        "logs/train_model/{model}/{metric}/fold{fold}_seed{seed}.log",
    benchmark:
        "benchmarks-out/train_model/{model}/{metric}/fold{fold}_seed{seed}.tsv"
    conda:
        "../envs/dmriscope.yaml"
    threads: config["train"]["threads"]
    resources:
        mem_mb=config["train"]["mem_mb"],
        runtime=config["train"]["runtime"],
    params:
        train=lambda wildcards: rule_train_params(
            config["train"], wildcards.model, wildcards.seed
        ),
        models=lambda wildcards: rule_models_params(config["models"], wildcards.model),
        grid=config["grid"],
        checkpoint_dir="results/checkpoints/{model}/{metric}/fold{fold}/seed{seed}",
    script:
        "../workflow_scripts/train_model.py"


rule predict_test:
    input:
        best=f"{RUN}/best.pt",
        tensor=STORE,
        index=FOLD_INDEX,
        brain_mask=GRID_BRAIN_MASK,
    output:
        predictions=f"{RUN}/predictions.tsv",
    log:
        "logs/predict_test/{model}/{metric}/fold{fold}_seed{seed}.log",
    benchmark:
        "benchmarks-out/predict_test/{model}/{metric}/fold{fold}_seed{seed}.tsv"
    conda:
        "../envs/dmriscope.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    script:
        "../workflow_scripts/predict_test.py"


rule summarise_model:
    input:
        predictions=replicates(f"{RUN}/predictions.tsv"),
        hparams=replicates(f"{RUN}/hparams.json"),
        histories=replicates(f"{RUN}/history.jsonl"),
        volumes="results/cohort/brain_volumes.tsv",
    output:
        predictions="results/models/{model}/{metric}/predictions.tsv",
        metrics="results/models/{model}/{metric}/metrics.json",
        roc="results/figures/models/{model}_{metric}_roc.png",
        curve="results/figures/models/{model}_{metric}_training.png",
    log:
        "logs/summarise_model/{model}/{metric}.log",
    conda:
        "../envs/dmriscope.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        label=config["label"],
        runs=replicate_runs,
        resamples=config["train"]["bootstrap_resamples"],
        seed=config["train"]["seed"],
        level=config["train"]["ci_level"],
    script:
        "../workflow_scripts/summarise_model.py"


rule fit_size_baseline:
    input:
        volumes="results/cohort/brain_volumes.tsv",
        folds=expand("results/split/fold{fold}.tsv", fold=FOLDS),
    output:
        predictions="results/models/size_only/predictions.tsv",
        metrics="results/models/size_only/metrics.json",
    log:
        "logs/fit_size_baseline/fit_size_baseline.log",
    conda:
        "../envs/dmriscope.yaml"
    params:
        label=config["label"],
        resamples=config["train"]["bootstrap_resamples"],
        seed=config["train"]["seed"],
        level=config["train"]["ci_level"],
        fit_sets=(
            ["train", "unused"]
            if config["split"]["match"] == "volume_train"
            else ["train"]
        ),
    script:
        "../workflow_scripts/fit_size_baseline.py"


rule fit_region_baseline:
    input:
        tensor=STORE,
        atlas=GRID_ATLAS,
        indexes=expand(FOLD_INDEX, fold=FOLDS, allow_missing=True),
        volumes="results/cohort/brain_volumes.tsv",
    output:
        predictions="results/models/region_means/{metric}/predictions.tsv",
        metrics="results/models/region_means/{metric}/metrics.json",
    log:
        "logs/fit_region_baseline/{metric}.log",
    conda:
        "../envs/dmriscope.yaml"
    params:
        label=config["label"],
        resamples=config["train"]["bootstrap_resamples"],
        seed=config["train"]["seed"],
        level=config["train"]["ci_level"],
        regress_out=config["tensors"]["regress_out"],
        fit_sets=(
            ["train"]
            if config["split"]["match"] == "volume_train"
            else ["train", "val"]
        ),
    script:
        "../workflow_scripts/fit_region_baseline.py"
