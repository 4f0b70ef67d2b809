"""Rule render_region_figures: Figures 4-6 (significant regions on template slices) and the median-delta_p map."""

from dmriscope.io import run_script
from dmriscope.render.figures import render_region_figures


def main(
    regions: list[str],
    template: str,
    atlas: str,
    labels: str,
    significant: str,
    heatmap: str,
    metric: str,
    criterion: str,
    n_slices: int,
) -> None:
    render_region_figures(regions, template, atlas, labels, significant, heatmap, metric, criterion, n_slices)


if __name__ == "__main__":
    run_script(
        main,
        snakemake.log[0],  # noqa: F821
        regions=list(snakemake.input.regions),  # noqa: F821
        template=snakemake.input.template,  # noqa: F821
        atlas=snakemake.input.atlas,  # noqa: F821
        labels=snakemake.input.labels,  # noqa: F821
        significant=snakemake.output.significant,  # noqa: F821
        heatmap=snakemake.output.heatmap,  # noqa: F821
        metric=snakemake.wildcards.metric,  # noqa: F821
        criterion=snakemake.params.criterion,  # noqa: F821
        n_slices=snakemake.params.n_slices,  # noqa: F821
    )
