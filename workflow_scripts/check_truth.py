"""Rule check_truth: planted sex-effect regions vs significant regions per model x metric (synthetic cohorts)."""

from dmriscope.io import run_script
from dmriscope.truth import truth_check_files


def main(regions: list[str], planted: str, tsv: str, md: str, html: str, criterion: str, alpha: float) -> None:
    truth_check_files(regions, planted, tsv, md, criterion, html, alpha)


if __name__ == "__main__":
    run_script(
        main,
        snakemake.log[0],
        regions=list(snakemake.input.regions),
        planted=snakemake.input.planted,
        tsv=snakemake.output.tsv,
        md=snakemake.output.md,
        html=snakemake.output.html,
        criterion=snakemake.params.criterion,
        alpha=snakemake.params.alpha,
    )
