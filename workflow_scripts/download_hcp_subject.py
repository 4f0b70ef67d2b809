"""Rule download_hcp_subject: one subject's HCP diffusion files from S3 (credentials from the AWS chain)."""

from dmriscope.cohort.hcp import download_subject_files
from dmriscope.io import run_script

if __name__ == "__main__":
    run_script(
        download_subject_files,
        snakemake.log[0],
        subject=snakemake.wildcards.subject,
        dwi=snakemake.output.dwi,
        bval=snakemake.output.bval,
        bvec=snakemake.output.bvec,
        mask=snakemake.output.mask,
        s3=dict(snakemake.params.s3),
    )
