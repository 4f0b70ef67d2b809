"""Rule fit_size_baseline: sex from native brain volume alone (logistic regression per fold), as Table 2's yardstick."""

from dmriscope.io import run_script
from dmriscope.size_baseline import fit_size_baseline

if __name__ == "__main__":
    run_script(
        fit_size_baseline,
        snakemake.log[0],
        label=dict(snakemake.params.label),
        volumes=snakemake.input.volumes,
        folds=list(snakemake.input.folds),
        out_predictions=snakemake.output.predictions,
        out_metrics=snakemake.output.metrics,
        n_resamples=int(snakemake.params.resamples),
        seed=int(snakemake.params.seed),
        level=float(snakemake.params.level),
        fit_sets=list(snakemake.params.fit_sets),
    )
