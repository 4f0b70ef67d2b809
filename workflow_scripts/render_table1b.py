"""Rule render_table1b: native brain volume by sex in each set (Table 1b)."""

from dmriscope.io import run_script
from dmriscope.render.analysis_tables import render_volume_table_files

if __name__ == "__main__":
    run_script(
        render_volume_table_files,
        snakemake.log[0],
        label=dict(snakemake.params.label),
        split_path=snakemake.input.split,
        volumes=snakemake.input.volumes,
        tsv=snakemake.output.tsv,
        md=snakemake.output.md,
        html=snakemake.output.html,
    )
