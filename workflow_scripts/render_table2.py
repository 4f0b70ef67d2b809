"""Rule render_table2: test performance of every model on FA, MD and MK, with AUC confidence intervals, the chance
check, the spread over folds and seeds, and the brain-size baseline."""

from dmriscope.io import run_script
from dmriscope.render.tables import render_table2

if __name__ == "__main__":
    run_script(
        render_table2,
        snakemake.log[0],
        label=dict(snakemake.params.label),
        metric_files=list(snakemake.input.metrics),
        models=list(snakemake.params.models),
        metrics=list(snakemake.params.metrics),
        out_tsv=snakemake.output.tsv,
        out_md=snakemake.output.md,
        out_html=snakemake.output.html,
        baseline=snakemake.input.baseline,
        region_baseline=list(snakemake.input.region_baseline),
    )
