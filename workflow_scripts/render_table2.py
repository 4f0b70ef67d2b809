"""Rule render_table2: test performance of every model on FA, MD and MK, with AUC confidence intervals."""

from dmriscope.io import run_script
from dmriscope.render.tables import render_table2


def main(metrics_files: list[str], models: list[str], metrics: list[str], tsv: str, md: str, html: str) -> None:
    render_table2(metrics_files, models, metrics, tsv, md, html)


if __name__ == "__main__":
    run_script(
        main,
        snakemake.log[0],
        metrics_files=list(snakemake.input.metrics),
        models=list(snakemake.params.models),
        metrics=list(snakemake.params.metrics),
        tsv=snakemake.output.tsv,
        md=snakemake.output.md,
        html=snakemake.output.html,
    )
