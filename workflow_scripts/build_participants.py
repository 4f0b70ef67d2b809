"""Rule build_participants (synthetic cohort): participants.tsv drawn like Table 1, or the configured table."""

from dmriscope.cohort.synthetic import build_participants
from dmriscope.io import run_script


def main(participants: str, subjects: list[str], cohort: dict) -> None:
    build_participants(subjects, cohort, participants)


if __name__ == "__main__":
    run_script(
        main,
        snakemake.log[0],
        participants=snakemake.output.participants,
        subjects=list(snakemake.params.subjects),
        cohort=dict(snakemake.params.cohort),
    )
