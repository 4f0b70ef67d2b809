"""Rule normalise_fold: one fold's index of the tensor store and the statistics of its training subjects."""

from dmriscope.fold_tensors import fold_tensors
from dmriscope.io import run_script

if __name__ == "__main__":
    run_script(
        fold_tensors,
        snakemake.log[0],
        tensor=snakemake.input.tensor,
        index=snakemake.input.index,
        fold=snakemake.input.fold,
        brain_mask=snakemake.input.brain_mask,
        out_index=snakemake.output.index,
        out_norm=snakemake.output.norm,
        out_norm_voxels=snakemake.output.norm_voxels,
        mode=snakemake.params.normalisation,
        clip=snakemake.params.clip,
        regress_out=snakemake.params.regress_out,
        volumes=snakemake.input.get("volumes"),
    )
