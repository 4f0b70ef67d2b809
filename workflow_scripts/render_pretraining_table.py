"""Rule render_pretraining_table: validation loss of both MAE stages against the population mean, per metric."""

from dmriscope.io import run_script
from dmriscope.render.pretraining import render_pretraining_table

if __name__ == "__main__":
    run_script(
        render_pretraining_table,
        snakemake.log[0],
        mae2d=list(snakemake.input.mae2d),
        mae3d=list(snakemake.input.mae3d),
        metrics=list(snakemake.params.metrics),
        folds=list(snakemake.params.folds),
        tsv=snakemake.output.tsv,
        md=snakemake.output.md,
        html=snakemake.output.html,
    )
