"""Rule render_table3: significant regions per model x metric (the paper's Table 3), raw p and BH-FDR."""

from dmriscope.io import run_script
from dmriscope.render.analysis_tables import table3_files

if __name__ == "__main__":
    run_script(
        table3_files,
        snakemake.log[0],
        regions=list(snakemake.input.regions),
        union=list(snakemake.input.union),
        tsv=snakemake.output.tsv,
        md=snakemake.output.md,
        html=snakemake.output.html,
    )
