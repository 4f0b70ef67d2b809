"""Rule check_truth: planted sex-effect regions vs significant regions per model x metric (synthetic cohorts)."""

from dmriscope.io import run_script
from dmriscope.truth import truth_check_files


def main(regions: list[str], planted: str, tsv: str, md: str, html: str, criterion: str) -> None:
    truth_check_files(regions, planted, tsv, md, criterion, html)


if __name__ == "__main__":
    run_script(
        main,
        snakemake.log[0],  # noqa: F821
        regions=list(snakemake.input.regions),  # noqa: F821
        planted=snakemake.input.planted,  # noqa: F821
        tsv=snakemake.output.tsv,  # noqa: F821
        md=snakemake.output.md,  # noqa: F821
        html=snakemake.output.html,  # noqa: F821
        criterion=snakemake.params.criterion,  # noqa: F821
    )
