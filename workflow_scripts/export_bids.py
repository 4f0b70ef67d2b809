"""Rule export_bids: the synthetic cohort as a BIDS dataset with a patient/control group (and QSIPrep derivatives)."""

from dmriscope.cohort.bids_export import export_bids
from dmriscope.io import run_script

if __name__ == "__main__":
    run_script(
        export_bids,
        snakemake.log[0],
        participants=snakemake.input.participants,
        subjects=list(snakemake.params.subjects),
        dwi=list(snakemake.input.dwi),
        bval=list(snakemake.input.bval),
        bvec=list(snakemake.input.bvec),
        masks=list(snakemake.input.masks),
        planted=snakemake.input.planted,
        template={
            "template_FA.nii.gz": snakemake.input.fa,
            "atlas.nii.gz": snakemake.input.atlas,
            "atlas_labels.tsv": snakemake.input.labels,
        },
        out_dataset=snakemake.output.dataset,
        out_planted=snakemake.output.planted,
        out_template=snakemake.output.template,
        seed=int(snakemake.params.seed),
    )
