"""Rule build_participants (real data): participants.tsv from the HCP unrestricted CSV and the subject list."""

from dmriscope.cohort.demographics import build_hcp_participants
from dmriscope.io import run_script


def main(participants: str, excluded: str, hcp: dict, table: str | None) -> None:
    build_hcp_participants(hcp, participants, excluded, table)


if __name__ == "__main__":
    run_script(
        main,
        snakemake.log[0],
        participants=snakemake.output.participants,
        excluded=snakemake.output.excluded,
        hcp=dict(snakemake.params.hcp),
        table=snakemake.params.table,
    )
