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
        snakemake.log[0],  # noqa: F821
        tensors=snakemake.input.tensors,  # noqa: F821
        index=snakemake.input.index,  # noqa: F821
        norm=snakemake.input.norm,  # noqa: F821
        brain_mask=snakemake.input.brain_mask,  # noqa: F821
        init=snakemake.input.init,  # noqa: F821
        checkpoint=snakemake.output.checkpoint,  # noqa: F821
        history=snakemake.output.history,  # noqa: F821
        loss_png=snakemake.output.loss_png,  # noqa: F821
        figure=snakemake.output.figure,  # noqa: F821
        vit=dict(snakemake.params.vit),  # noqa: F821
        pretrain=dict(snakemake.params.pretrain),  # noqa: F821
        threads=snakemake.threads,  # noqa: F821
    )
