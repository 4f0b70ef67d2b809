"""Rule import_bids_subject: one subject's DWI series (linked), gradients and brain mask from the BIDS dataset."""

from dmriscope.cohort.bids import import_subject
from dmriscope.io import run_script

if __name__ == "__main__":
    run_script(
        import_subject,
        snakemake.log[0],
        subject=snakemake.wildcards.subject,
        candidates={k: list(v) for k, v in snakemake.params.candidates.items()},
        mask=snakemake.params.mask,
        out_dwi=snakemake.output.dwi,
        out_bval=snakemake.output.bval,
        out_bvec=snakemake.output.bvec,
        out_mask=snakemake.output.mask,
        out_source=snakemake.output.source,
    )
