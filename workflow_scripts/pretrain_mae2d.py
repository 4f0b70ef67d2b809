"""Rule pretrain_mae2d: a 2D masked autoencoder on the training subjects' sagittal slabs of one metric."""

from typing import Any

from dmriscope.io import run_script
from dmriscope.pretrain import pretrain_mae2d


def main(
    tensors: str,
    index: str,
    norm: str,
    brain_mask: str,
    checkpoint: str,
    history: str,
    loss_png: str,
    vit: dict[str, Any],
    pretrain: dict[str, Any],
    threads: int,
) -> None:
    pretrain_mae2d(tensors, index, norm, brain_mask, checkpoint, history, loss_png, vit, pretrain, threads)


if __name__ == "__main__":
    run_script(
        main,
        snakemake.log[0],
        tensors=snakemake.input.tensor,
        index=snakemake.input.index,
        norm=snakemake.input.norm,
        brain_mask=snakemake.input.brain_mask,
        checkpoint=snakemake.output.checkpoint,
        history=snakemake.output.history,
        loss_png=snakemake.output.loss_png,
        vit=dict(snakemake.params.vit),
        pretrain=dict(snakemake.params.pretrain),
        threads=snakemake.threads,
    )
