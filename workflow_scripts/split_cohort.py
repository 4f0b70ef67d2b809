"""Rule split_cohort: stratified, seeded train/val/test split of the participants."""

from dmriscope.io import run_script
from dmriscope.split import split_cohort_files


def main(participants: str, split: str, digest: str, counts: list[int], seed: int) -> None:
    split_cohort_files(participants, split, digest, counts, seed)


if __name__ == "__main__":
    run_script(
        main,
        snakemake.log[0],  # noqa: F821
        participants=snakemake.input.participants,  # noqa: F821
        split=snakemake.output.split,  # noqa: F821
        digest=snakemake.output.digest,  # noqa: F821
        counts=list(snakemake.params.counts),  # noqa: F821
        seed=int(snakemake.params.seed),  # noqa: F821
    )
