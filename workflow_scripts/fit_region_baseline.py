"""Rule fit_region_baseline: the label from the atlas-region means of one metric (logistic regression per fold)."""

from dmriscope.io import run_script
from dmriscope.region_baseline import fit_region_baseline

if __name__ == "__main__":
    run_script(
        fit_region_baseline,
        snakemake.log[0],
        label=dict(snakemake.params.label),
        metric=snakemake.wildcards.metric,
        tensor=snakemake.input.tensor,
        atlas=snakemake.input.atlas,
        indexes=list(snakemake.input.indexes),
        volumes=snakemake.input.volumes,
        out_predictions=snakemake.output.predictions,
        out_metrics=snakemake.output.metrics,
        n_resamples=int(snakemake.params.resamples),
        seed=int(snakemake.params.seed),
        level=float(snakemake.params.level),
        regress_out=snakemake.params.regress_out,
        fit_sets=list(snakemake.params.fit_sets),
    )
