"""Rule pool_occlusion: a model x metric's per-run delta_p tables pooled (seeds averaged, folds concatenated)."""

from dmriscope.ensemble import pool_occlusion_files
from dmriscope.io import run_script

if __name__ == "__main__":
    run_script(
        pool_occlusion_files,
        snakemake.log[0],
        runs=[tuple(r) for r in snakemake.params.runs],
        delta_p=list(snakemake.input.delta_p),
        out=snakemake.output.delta_p,
    )
