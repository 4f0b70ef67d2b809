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
        snakemake.log[0],  # noqa: F821
        best=snakemake.input.best,  # noqa: F821
        tensor=snakemake.input.tensor,  # noqa: F821
        index=snakemake.input.index,  # noqa: F821
        brain_mask=snakemake.input.brain_mask,  # noqa: F821
        history=snakemake.input.history,  # noqa: F821
        predictions=snakemake.output.predictions,  # noqa: F821
        metrics=snakemake.output.metrics,  # noqa: F821
        roc=snakemake.output.roc,  # noqa: F821
        curve=snakemake.output.curve,  # noqa: F821
        resamples=int(snakemake.params.resamples),  # noqa: F821
        seed=int(snakemake.params.seed),  # noqa: F821
        level=float(snakemake.params.level),  # noqa: F821
        threads=snakemake.threads,  # noqa: F821
    )
