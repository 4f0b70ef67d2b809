"""Rule pretrain_mae2d: a 2D masked autoencoder on the training subjects' sagittal slabs of one metric."""

from dmriscope.io import run_script
from dmriscope.pretrain import pretrain_mae2d

if __name__ == "__main__":
    run_script(
        pretrain_mae2d,
        snakemake.log[0],
        tensors=snakemake.input.tensor,
        index=snakemake.input.index,
        norm=snakemake.input.norm,
        norm_voxels=snakemake.input.norm_voxels,
        brain_mask=snakemake.input.brain_mask,
        checkpoint=snakemake.output.checkpoint,
        history=snakemake.output.history,
        loss_png=snakemake.output.loss_png,
        vit=dict(snakemake.params.vit),
        pretrain=dict(snakemake.params.pretrain),
        threads=snakemake.threads,
    )
