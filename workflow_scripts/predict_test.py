"""Rule predict_test: P(male) of the fold's test subjects from one run's best.pt."""

from dmriscope.evaluate import predict_test_files
from dmriscope.io import run_script

if __name__ == "__main__":
    run_script(
        predict_test_files,
        snakemake.log[0],
        checkpoint=snakemake.input.best,
        tensor=snakemake.input.tensor,
        index=snakemake.input.index,
        brain_mask=snakemake.input.brain_mask,
        out_predictions=snakemake.output.predictions,
        threads=snakemake.threads,
    )
