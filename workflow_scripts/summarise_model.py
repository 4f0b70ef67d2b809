"""Rule summarise_model: a model x metric's runs pooled into predictions, metrics (bootstrap CI, spread), plots."""

from dmriscope.ensemble import summarise_runs
from dmriscope.io import run_script

if __name__ == "__main__":
    run_script(
        summarise_runs,
        snakemake.log[0],
        label=dict(snakemake.params.label),
        model=snakemake.wildcards.model,
        metric=snakemake.wildcards.metric,
        runs=[tuple(r) for r in snakemake.params.runs],
        predictions=list(snakemake.input.predictions),
        hparams=list(snakemake.input.hparams),
        histories=list(snakemake.input.histories),
        volumes=snakemake.input.volumes,
        out_predictions=snakemake.output.predictions,
        out_metrics=snakemake.output.metrics,
        out_roc=snakemake.output.roc,
        out_curve=snakemake.output.curve,
        n_resamples=int(snakemake.params.resamples),
        seed=int(snakemake.params.seed),
        level=float(snakemake.params.level),
    )
