"""Rule render_table4: parameter counts (backbone, head, total) of every model at the paper's 180x224x224."""

from dmriscope.io import run_script
from dmriscope.render.tables import render_table4

if __name__ == "__main__":
    run_script(
        render_table4,
        snakemake.log[0],
        tsv=snakemake.output.tsv,
        md=snakemake.output.md,
        html=snakemake.output.html,
    )
