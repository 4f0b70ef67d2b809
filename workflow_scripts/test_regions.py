"""Rule test_regions: per-region one-sided Wilcoxon tests of delta_p, with BH-FDR and Holm corrections."""

from dmriscope.io import run_script
from dmriscope.stats import region_statistics_files


def main(delta_p: str, atlas: str, wm_mask: str, regions: str, alpha: float) -> None:
    region_statistics_files(delta_p, atlas, wm_mask, regions, alpha)


if __name__ == "__main__":
    run_script(
        main,
        snakemake.log[0],  # noqa: F821
        delta_p=snakemake.input.delta_p,  # noqa: F821
        atlas=snakemake.input.atlas,  # noqa: F821
        wm_mask=snakemake.input.wm_mask,  # noqa: F821
        regions=snakemake.output.regions,  # noqa: F821
        alpha=snakemake.params.alpha,  # noqa: F821
    )
