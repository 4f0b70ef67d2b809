"""Rule compare_models: each model's test correct-class probabilities against the reference model's (Wilcoxon)."""

from dmriscope.io import run_script
from dmriscope.render.analysis_tables import compare_models_files

if __name__ == "__main__":
    run_script(
        compare_models_files,
        snakemake.log[0],
        predictions=list(snakemake.input.predictions),
        tsv=snakemake.output.tsv,
        md=snakemake.output.md,
        html=snakemake.output.html,
        reference=snakemake.params.reference,
    )
