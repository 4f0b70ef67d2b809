"""Rule render_table3: significant regions per model x metric (the paper's Table 3), raw p and BH-FDR."""

from dmriscope.io import run_script
from dmriscope.stats import table3_files


def main(regions: list[str], tsv: str, md: str, html: str, alpha: float) -> None:
    table3_files(regions, tsv, md, html, alpha)


if __name__ == "__main__":
    run_script(
        main,
        snakemake.log[0],
        regions=list(snakemake.input.regions),
        tsv=snakemake.output.tsv,
        md=snakemake.output.md,
        html=snakemake.output.html,
        alpha=snakemake.params.alpha,
    )
