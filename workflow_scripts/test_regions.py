"""Rule test_regions: per-region one-sided Wilcoxon tests of delta_p, with BH-FDR and Holm corrections."""

from dmriscope.io import run_script
from dmriscope.stats import region_statistics_files

if __name__ == "__main__":
    run_script(
        region_statistics_files,
        snakemake.log[0],
        delta_p=snakemake.input.delta_p,
        atlas=snakemake.input.atlas,
        wm_mask=snakemake.input.wm_mask,
        regions=snakemake.output.regions,
        alpha=snakemake.params.alpha,
        scale=snakemake.params.scale,
    )
