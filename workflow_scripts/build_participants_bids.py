"""Rule build_participants (cohort.source bids): the dataset's participants.tsv -> the label, age and age bin of each
subject to process, and the subjects left out with the reason."""

from dmriscope.cohort.bids import build_bids_participants
from dmriscope.io import run_script

if __name__ == "__main__":
    run_script(
        build_bids_participants,
        snakemake.log[0],
        bids=dict(snakemake.params.bids),
        participants_out=snakemake.output.participants,
        excluded_out=snakemake.output.excluded,
        label=dict(snakemake.params.label),
        age_bins=[list(b) for b in snakemake.params.age_bins],
        stratify=list(snakemake.params.stratify),
    )
