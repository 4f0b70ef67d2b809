"""Rule pretrain_mae3d: a 3D masked autoencoder on training volumes, its encoder initialised by the 2D MAE."""

from typing import Any

from dmriscope.io import run_script
from dmriscope.pretrain import pretrain_mae3d


def main(
    tensors: str,
    index: str,
    norm: str,
    brain_mask: str,
    init: str,
    checkpoint: str,
    history: str,
    loss_png: str,
    figure: str,
    vit: dict[str, Any],
    pretrain: dict[str, Any],
    threads: int,
) -> None:
    pretrain_mae3d(
        tensors, index, norm, brain_mask, init, checkpoint, history, loss_png, figure, vit, pretrain, threads
    )


if __name__ == "__main__":
    run_script(
        main,
        snakemake.log[0],
        tensors=snakemake.input.tensor,
        index=snakemake.input.index,
        norm=snakemake.input.norm,
        brain_mask=snakemake.input.brain_mask,
        init=snakemake.input.init,
        checkpoint=snakemake.output.checkpoint,
        history=snakemake.output.history,
        loss_png=snakemake.output.loss_png,
        figure=snakemake.output.figure,
        vit=dict(snakemake.params.vit),
        pretrain=dict(snakemake.params.pretrain),
        threads=snakemake.threads,
    )
