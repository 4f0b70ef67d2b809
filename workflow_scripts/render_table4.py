"""Rule render_table4: parameter counts (backbone, head, total) of every model at the paper's 180x224x224."""

from dmriscope.io import run_script
from dmriscope.render.tables import render_table4


def main(tsv: str, md: str, html: str) -> None:
    render_table4(tsv, md, html)


if __name__ == "__main__":
    run_script(
        main,
        snakemake.log[0],
        tsv=snakemake.output.tsv,
        md=snakemake.output.md,
        html=snakemake.output.html,
    )
