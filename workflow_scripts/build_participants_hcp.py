"""Rule build_participants (real data): participants.tsv from the HCP unrestricted CSV and the subject list."""

from dmriscope.cohort.demographics import build_hcp_participants
from dmriscope.io import run_script

if __name__ == "__main__":
    run_script(
        build_hcp_participants,
        snakemake.log[0],
        hcp=dict(snakemake.params.hcp),
        participants_out=snakemake.output.participants,
        excluded_out=snakemake.output.excluded,
        table=snakemake.params.table,
    )
