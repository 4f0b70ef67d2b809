"""Rule split_cohort: stratified, seeded split of the participants (holdout train/val/test, or k folds)."""

from dmriscope.io import run_script
from dmriscope.split import split_cohort_files

if __name__ == "__main__":
    run_script(
        split_cohort_files,
        snakemake.log[0],
        label=dict(snakemake.params.label),
        participants=snakemake.input.participants,
        split_path=snakemake.output.split,
        digest_path=snakemake.output.digest,
        fold_paths=list(snakemake.output.folds),
        scheme=snakemake.params.scheme,
        counts=list(snakemake.params.counts),
        n_val=int(snakemake.params.n_val),
        seed=int(snakemake.params.seed),
        match=snakemake.params.match,
        volumes=snakemake.input.volumes if snakemake.params.match != "none" else None,
        age_bins=[list(b) for b in snakemake.params.age_bins],
        stratify=list(snakemake.params.stratify),
    )
