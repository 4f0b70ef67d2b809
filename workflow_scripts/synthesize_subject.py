"""Rule synthesize_subject: one synthetic subject's DWI (HCP layout) and its ground-truth FA, MD, MK."""

from dmriscope.cohort.synthetic import synthesize_subject
from dmriscope.io import run_script

if __name__ == "__main__":
    run_script(
        synthesize_subject,
        snakemake.log[0],
        subject=snakemake.wildcards.subject,
        participants=snakemake.input.participants,
        atlas=snakemake.input.atlas,
        tissue=snakemake.input.tissue,
        texture=snakemake.input.texture,
        out_dwi=snakemake.output.dwi,
        out_bval=snakemake.output.bval,
        out_bvec=snakemake.output.bvec,
        out_mask=snakemake.output.mask,
        out_truth=list(snakemake.output.truth),
        out_params=snakemake.output.params,
        synthetic=dict(snakemake.params.synthetic),
        seed=int(snakemake.params.seed),
        dki=dict(snakemake.params.dki),
    )
