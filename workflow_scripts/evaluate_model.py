"""Rule evaluate_model: test-set predictions, metrics with a bootstrap AUC CI, ROC and training-curve plots."""

from dmriscope.evaluate import evaluate_model_files
from dmriscope.io import run_script


def main(
    best: str,
    tensor: str,
    index: str,
    brain_mask: str,
    history: str,
    predictions: str,
    metrics: str,
    roc: str,
    curve: str,
    resamples: int,
    seed: int,
    level: float,
    threads: int,
) -> None:
    evaluate_model_files(
        best, tensor, index, brain_mask, history, predictions, metrics, roc, curve, resamples, seed, level, threads
    )


if __name__ == "__main__":
    run_script(
        main,
        snakemake.log[0],
        best=snakemake.input.best,
        tensor=snakemake.input.tensor,
        index=snakemake.input.index,
        brain_mask=snakemake.input.brain_mask,
        history=snakemake.input.history,
        predictions=snakemake.output.predictions,
        metrics=snakemake.output.metrics,
        roc=snakemake.output.roc,
        curve=snakemake.output.curve,
        resamples=int(snakemake.params.resamples),
        seed=int(snakemake.params.seed),
        level=float(snakemake.params.level),
        threads=snakemake.threads,
    )
