"""Rule test_union: the region-level test of the union over models (Simes over models, or their partial
conjunction with occlusion.union_min_models > 1, then BH-FDR and Holm)."""

from dmriscope.io import run_script
from dmriscope.stats import union_statistics_files

if __name__ == "__main__":
    run_script(
        union_statistics_files,
        snakemake.log[0],
        regions=list(snakemake.input.regions),
        union=snakemake.output.regions,
        alpha=snakemake.params.alpha,
        min_models=snakemake.params.min_models,
    )
