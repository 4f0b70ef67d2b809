"""Rule compare_models: each model's test correct-class probabilities against the reference model's (Wilcoxon)."""

from dmriscope.io import run_script
from dmriscope.stats import compare_models_files


def main(predictions: list[str], tsv: str, md: str, html: str, reference: str) -> None:
    compare_models_files(predictions, tsv, md, reference, html)


if __name__ == "__main__":
    run_script(
        main,
        snakemake.log[0],
        predictions=list(snakemake.input.predictions),
        tsv=snakemake.output.tsv,
        md=snakemake.output.md,
        html=snakemake.output.html,
        reference=snakemake.params.reference,
    )
