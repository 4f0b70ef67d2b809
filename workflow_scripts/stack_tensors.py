"""Rule stack_tensors: one metric's registered maps on the model grid, as a memory-mapped .npy + subject index
(+ each map's smoothness, blurred to tensors.smooth_to_fwhm when set)."""

from dmriscope.io import run_script
from dmriscope.tensors import stack_tensors

if __name__ == "__main__":
    run_script(
        stack_tensors,
        snakemake.log[0],
        label=dict(snakemake.params.label),
        maps=list(snakemake.input.maps),
        subjects=list(snakemake.params.subjects),
        split=snakemake.input.split,
        template=snakemake.input.template,
        brain_mask=snakemake.input.brain_mask,
        tensor=snakemake.output.tensor,
        index=snakemake.output.index,
        smoothness=snakemake.output.smoothness,
        smooth_to_fwhm=snakemake.params.smooth_to_fwhm,
    )
