"""Rule synthesize_subject: one synthetic subject's DWI (HCP layout) and its ground-truth FA, MD, MK."""

from dmriscope.cohort.synthetic import synthesize_subject
from dmriscope.io import run_script


def main(
    subject: str, participants: str, atlas: str, tissue: str, texture: str, dwi: str, bval: str, bvec: str,
    mask: str, truth: list[str], params: str, synthetic: dict, seed: int, dki: dict,
) -> None:  # fmt: skip
    synthesize_subject(
        subject, participants, atlas, tissue, texture, dwi, bval, bvec, mask, truth, params, synthetic, seed, dki
    )


if __name__ == "__main__":
    run_script(
        main,
        snakemake.log[0],
        subject=snakemake.wildcards.subject,
        participants=snakemake.input.participants,
        atlas=snakemake.input.atlas,
        tissue=snakemake.input.tissue,
        texture=snakemake.input.texture,
        dwi=snakemake.output.dwi,
        bval=snakemake.output.bval,
        bvec=snakemake.output.bvec,
        mask=snakemake.output.mask,
        truth=list(snakemake.output.truth),
        params=snakemake.output.params,
        synthetic=dict(snakemake.params.synthetic),
        seed=int(snakemake.params.seed),
        dki=dict(snakemake.params.dki),
    )
