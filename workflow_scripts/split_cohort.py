"""Rule split_cohort: stratified, seeded train/val/test split of the participants."""

from dmriscope.io import run_script
from dmriscope.split import split_cohort_files


def main(participants: str, split: str, digest: str, counts: list[int], seed: int) -> None:
    split_cohort_files(participants, split, digest, counts, seed)


if __name__ == "__main__":
    run_script(
        main,
        snakemake.log[0],
        participants=snakemake.input.participants,
        split=snakemake.output.split,
        digest=snakemake.output.digest,
        counts=list(snakemake.params.counts),
        seed=int(snakemake.params.seed),
    )
