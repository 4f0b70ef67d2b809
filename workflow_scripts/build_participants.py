"""Rule build_participants (synthetic cohort): participants.tsv drawn like Table 1, or the configured table."""

from dmriscope.cohort.synthetic_template import build_participants
from dmriscope.io import run_script

if __name__ == "__main__":
    run_script(
        build_participants,
        snakemake.log[0],
        subjects=list(snakemake.params.subjects),
        cohort=dict(snakemake.params.cohort),
        out=snakemake.output.participants,
    )
