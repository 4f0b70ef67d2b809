# Masked-autoencoder pretraining of the ViT encoder, per metric: 2D MAE on sagittal slabs, then 3D MAE on volumes.
# Subjects of pretrain.sets only (training by default); validation subjects are scored against the population
# mean every epoch. GPU profiles add `gpu: 1` to both rules (CUDA + bf16 autocast are picked up automatically).


rule pretrain_mae2d:
    input:
        tensors="results/tensors/{metric}.npy",
        index="results/tensors/{metric}_index.tsv",
        norm="results/tensors/{metric}_norm.json",
        norm_voxels="results/tensors/{metric}_norm.npy",
        brain_mask="results/tensors/brain_mask.npy",
    output:
        checkpoint="results/pretrain/{metric}/mae2d.pt",
        history="results/pretrain/{metric}/mae2d_history.jsonl",
        loss_png="results/pretrain/{metric}/mae2d_loss.png",
    log:
        "logs/pretrain_mae2d/{metric}.log",
    benchmark:
        "benchmarks-out/pretrain_mae2d/{metric}.tsv"
    conda:
        "../envs/dmriscope.yaml"
    threads: config["pretrain"]["threads"]
    resources:
        mem_mb=8000,
        runtime=240,
    params:
        vit=config["models"]["vit"],
        pretrain=config["pretrain"],
    script:
        "../workflow_scripts/pretrain_mae2d.py"


rule pretrain_mae3d:
    input:
        tensors="results/tensors/{metric}.npy",
        index="results/tensors/{metric}_index.tsv",
        norm="results/tensors/{metric}_norm.json",
        norm_voxels="results/tensors/{metric}_norm.npy",
        brain_mask="results/tensors/brain_mask.npy",
        init="results/pretrain/{metric}/mae2d.pt",
    output:
        checkpoint="results/pretrain/{metric}/mae3d.pt",
        history="results/pretrain/{metric}/mae3d_history.jsonl",
        loss_png=report(
            "results/pretrain/{metric}/mae3d_loss.png",
            caption="../report/pretrain_loss.rst",
            category="Pretraining",
            labels={"metric": "{metric}", "figure": "loss"},
        ),
        figure=report(
            "results/figures/pretrain/{metric}_reconstruction.png",
            caption="../report/pretrain_reconstruction.rst",
            category="Pretraining",
            labels={"metric": "{metric}", "figure": "reconstruction"},
        ),
    log:
        "logs/pretrain_mae3d/{metric}.log",
    benchmark:
        "benchmarks-out/pretrain_mae3d/{metric}.tsv"
    conda:
        "../envs/dmriscope.yaml"
    threads: config["pretrain"]["threads"]
    resources:
        mem_mb=16000,
        runtime=480,
    params:
        vit=config["models"]["vit"],
        pretrain=config["pretrain"],
    script:
        "../workflow_scripts/pretrain_mae3d.py"
