"""Rule occlude_regions: occlude each atlas region of each test subject and record the correct-class probability."""

from dmriscope.io import run_script
from dmriscope.occlusion import occlude_model_files

if __name__ == "__main__":
    run_script(
        occlude_model_files,
        snakemake.log[0],
        checkpoint=snakemake.input.checkpoint,
        tensor=snakemake.input.tensor,
        index=snakemake.input.index,
        brain_mask=snakemake.input.brain_mask,
        atlas=snakemake.input.atlas,
        wm_mask=snakemake.input.wm_mask,
        labels=snakemake.input.labels,
        delta_p=snakemake.output.delta_p,
        batch_size=snakemake.params.batch_size,
        threads=snakemake.threads,
    )
