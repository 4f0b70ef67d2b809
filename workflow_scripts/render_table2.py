"""Rule render_table2: test performance of every model on FA, MD and MK, with AUC confidence intervals."""

from dmriscope.io import run_script
from dmriscope.render.tables import render_table2


def main(metrics_files: list[str], models: list[str], metrics: list[str], tsv: str, md: str) -> None:
    render_table2(metrics_files, models, metrics, tsv, md)


if __name__ == "__main__":
    run_script(
        main,
        snakemake.log[0],  # noqa: F821
        metrics_files=list(snakemake.input.metrics),  # noqa: F821
        models=list(snakemake.params.models),  # noqa: F821
        metrics=list(snakemake.params.metrics),  # noqa: F821
        tsv=snakemake.output.tsv,  # noqa: F821
        md=snakemake.output.md,  # noqa: F821
    )
