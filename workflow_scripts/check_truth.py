"""Rule check_truth: planted sex-effect regions vs significant regions per model x metric (synthetic cohorts)."""

from dmriscope.io import run_script
from dmriscope.render.analysis_tables import truth_check_files

if __name__ == "__main__":
    run_script(
        truth_check_files,
        snakemake.log[0],
        label=dict(snakemake.params.label),
        regions=list(snakemake.input.regions),
        union=list(snakemake.input.union),
        planted=snakemake.input.planted,
        tsv=snakemake.output.tsv,
        md=snakemake.output.md,
        html=snakemake.output.html,
        criterion=snakemake.params.criterion,
    )
