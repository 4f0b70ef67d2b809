"""Rule render_table3: significant regions per model x metric (the paper's Table 3), raw p and BH-FDR."""

from dmriscope.io import run_script
from dmriscope.stats import table3_files


def main(regions: list[str], tsv: str, md: str, html: str) -> None:
    table3_files(regions, tsv, md, html)


if __name__ == "__main__":
    run_script(
        main,
        snakemake.log[0],  # noqa: F821
        regions=list(snakemake.input.regions),  # noqa: F821
        tsv=snakemake.output.tsv,  # noqa: F821
        md=snakemake.output.md,  # noqa: F821
        html=snakemake.output.html,  # noqa: F821
    )
