"""Rule render_table1c: the registered maps' smoothness by group, set and metric (Table 1c)."""

from dmriscope.io import run_script
from dmriscope.render.analysis_tables import render_smoothness_table_files

if __name__ == "__main__":
    run_script(
        render_smoothness_table_files,
        snakemake.log[0],
        label=dict(snakemake.params.label),
        metrics=list(snakemake.params.metrics),
        split_path=snakemake.input.split,
        smoothness=list(snakemake.input.smoothness),
        tsv=snakemake.output.tsv,
        md=snakemake.output.md,
        html=snakemake.output.html,
    )
