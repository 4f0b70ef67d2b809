"""Rule download_hcp_subject: one subject's HCP diffusion files from S3 (credentials from the AWS chain)."""

from dmriscope.cohort.hcp import S3Source, download_subject
from dmriscope.io import run_script


def main(subject: str, dwi: str, bval: str, bvec: str, mask: str, s3: dict) -> None:
    outputs = {"data.nii.gz": dwi, "bvals": bval, "bvecs": bvec, "nodif_brain_mask.nii.gz": mask}
    download_subject(subject, outputs, S3Source.from_config(s3))


if __name__ == "__main__":
    run_script(
        main,
        snakemake.log[0],
        subject=snakemake.wildcards.subject,
        dwi=snakemake.output.dwi,
        bval=snakemake.output.bval,
        bvec=snakemake.output.bvec,
        mask=snakemake.output.mask,
        s3=dict(snakemake.params.s3),
    )
