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
        snakemake.log[0],  # noqa: F821
        subject=snakemake.wildcards.subject,  # noqa: F821
        participants=snakemake.input.participants,  # noqa: F821
        atlas=snakemake.input.atlas,  # noqa: F821
        tissue=snakemake.input.tissue,  # noqa: F821
        texture=snakemake.input.texture,  # noqa: F821
        dwi=snakemake.output.dwi,  # noqa: F821
        bval=snakemake.output.bval,  # noqa: F821
        bvec=snakemake.output.bvec,  # noqa: F821
        mask=snakemake.output.mask,  # noqa: F821
        truth=list(snakemake.output.truth),  # noqa: F821
        params=snakemake.output.params,  # noqa: F821
        synthetic=dict(snakemake.params.synthetic),  # noqa: F821
        seed=int(snakemake.params.seed),  # noqa: F821
        dki=dict(snakemake.params.dki),  # noqa: F821
    )
