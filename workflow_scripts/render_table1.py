"""Rule render_table1: the cohort by sex and age bin in each set (the paper's Table 1)."""

from dmriscope.io import run_script
from dmriscope.render.analysis_tables import render_table1_files

if __name__ == "__main__":
    run_script(
        render_table1_files,
        snakemake.log[0],
        label=dict(snakemake.params.label),
        split_path=snakemake.input.split,
        tsv=snakemake.output.tsv,
        md=snakemake.output.md,
        html=snakemake.output.html,
    )
