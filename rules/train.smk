# Training and test-set evaluation of every model on every metric. The resume state lives in
# results/checkpoints/{model}/{metric}/ (not a declared output: Snakemake deletes those before re-running an
# incomplete job). GPU profiles add `gpu: 1` to train_model (CUDA + bf16 autocast are picked up automatically).


rule train_model:
    input:
        tensor="results/tensors/{metric}.npy",
        index="results/tensors/{metric}_index.tsv",
        norm="results/tensors/{metric}_norm.json",
        norm_voxels="results/tensors/{metric}_norm.npy",
        brain_mask="results/tensors/brain_mask.npy",
        atlas="results/tensors/atlas.npy",
        wm_mask="results/tensors/wm_mask.npy",
        split_digest="results/split/split.sha256",
        pretrained=branch(
            evaluate("{model} in ('vit_linprobe', 'vit_finetune')"),
            then="results/pretrain/{metric}/mae3d.pt",
        ),
    output:
        best="results/models/{model}/{metric}/best.pt",
        history="results/models/{model}/{metric}/history.jsonl",
        hparams="results/models/{model}/{metric}/hparams.json",
    log:
        "logs/train_model/{model}/{metric}.log",
    benchmark:
        "benchmarks-out/train_model/{model}/{metric}.tsv"
    conda:
        "../envs/dmriscope.yaml"
    threads: config["train"]["threads"]
    resources:
        mem_mb=config["train"]["mem_mb"],
        runtime=config["train"]["runtime"],
    params:
        train=config["train"],
        models=config["models"],
        grid=config["grid"],
        checkpoint_dir="results/checkpoints/{model}/{metric}",
    script:
        "../workflow_scripts/train_model.py"


rule evaluate_model:
    input:
        best="results/models/{model}/{metric}/best.pt",
        history="results/models/{model}/{metric}/history.jsonl",
        tensor="results/tensors/{metric}.npy",
        index="results/tensors/{metric}_index.tsv",
        brain_mask="results/tensors/brain_mask.npy",
    output:
        predictions="results/models/{model}/{metric}/predictions.tsv",
        metrics="results/models/{model}/{metric}/metrics.json",
        roc="results/figures/models/{model}_{metric}_roc.png",
        curve="results/figures/models/{model}_{metric}_training.png",
    log:
        "logs/evaluate_model/{model}/{metric}.log",
    conda:
        "../envs/dmriscope.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        resamples=config["train"]["bootstrap_resamples"],
        seed=config["train"]["seed"],
        level=config["train"]["ci_level"],
    script:
        "../workflow_scripts/evaluate_model.py"
