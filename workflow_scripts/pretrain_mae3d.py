"""Rule pretrain_mae3d: a 3D masked autoencoder on training volumes, its encoder initialised by the 2D MAE."""

from dmriscope.io import run_script
from dmriscope.pretrain import pretrain_mae3d

if __name__ == "__main__":
    run_script(
        pretrain_mae3d,
        snakemake.log[0],
        tensors=snakemake.input.tensor,
        index=snakemake.input.index,
        norm=snakemake.input.norm,
        norm_voxels=snakemake.input.norm_voxels,
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
