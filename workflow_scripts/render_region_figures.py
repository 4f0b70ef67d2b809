"""Rule render_region_figures: Figures 4-6 (significant regions on template slices) and the median-delta_p map."""

from dmriscope.io import run_script
from dmriscope.render.figures import render_region_figures

if __name__ == "__main__":
    run_script(
        render_region_figures,
        snakemake.log[0],
        regions=list(snakemake.input.regions),
        union=snakemake.input.union,
        template=snakemake.input.template,
        atlas=snakemake.input.atlas,
        labels=snakemake.input.labels,
        significant=snakemake.output.significant,
        heatmap=snakemake.output.heatmap,
        metric=snakemake.wildcards.metric,
        criterion=snakemake.params.criterion,
        n_slices=snakemake.params.n_slices,
    )
