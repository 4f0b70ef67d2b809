# Masked-autoencoder pretraining of the ViT encoder, per metric: 2D MAE on sagittal slabs, then 3D MAE on volumes.
# Per fold (the holdout split is fold 0), on subjects of pretrain.sets only (training by default); validation
# subjects are scored against the population mean every epoch. GPU profiles add `gpu: 1` to both rules (CUDA + bf16 autocast are picked up automatically).


rule pretrain_mae2d:
    input:
        **fold_tensors(),
    output:
        checkpoint="results/pretrain/{metric}/fold{fold}/mae2d.pt",
        history="results/pretrain/{metric}/fold{fold}/mae2d_history.jsonl",
        loss_png="results/pretrain/{metric}/fold{fold}/mae2d_loss.png",
    log:
        "logs/pretrain_mae2d/fold{fold}/{metric}.log",
    benchmark:
        "benchmarks-out/pretrain_mae2d/fold{fold}/{metric}.tsv"
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
        **fold_tensors(),
        init="results/pretrain/{metric}/fold{fold}/mae2d.pt",
    output:
        checkpoint="results/pretrain/{metric}/fold{fold}/mae3d.pt",
        history="results/pretrain/{metric}/fold{fold}/mae3d_history.jsonl",
        loss_png=report(
            "results/pretrain/{metric}/fold{fold}/mae3d_loss.png",
            caption="../report/pretrain_loss.rst",
            category="Pretraining",
            labels={"metric": "{metric}", "fold": "{fold}", "figure": "loss"},
        ),
        figure=report(
            "results/figures/pretrain/fold{fold}/{metric}_reconstruction.png",
            caption="../report/pretrain_reconstruction.rst",
            category="Pretraining",
            labels={
                "metric": "{metric}",
                "fold": "{fold}",
                "figure": "reconstruction",
            },
        ),
    log:
        "logs/pretrain_mae3d/fold{fold}/{metric}.log",
    benchmark:
        "benchmarks-out/pretrain_mae3d/fold{fold}/{metric}.tsv"
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
