"""Rule measure_brain_volumes: every subject's native brain-mask volume (mm^3)."""

from dmriscope.brain_size import measure_brain_volumes
from dmriscope.io import run_script

if __name__ == "__main__":
    run_script(
        measure_brain_volumes,
        snakemake.log[0],
        masks=list(snakemake.input.masks),
        subjects=list(snakemake.params.subjects),
        out=snakemake.output.volumes,
    )
