"""Rule prepare_template (synthetic cohort): the phantom's FA template, 48-region atlas, masks and planted effects."""

from dmriscope.cohort.synthetic import prepare_template
from dmriscope.io import run_script


def main(
    fa: str, atlas: str, labels: str, wm_mask: str, tissue: str, texture: str, planted: str, synthetic: dict, seed: int
) -> None:
    prepare_template(fa, atlas, labels, wm_mask, tissue, texture, planted, synthetic, seed)


if __name__ == "__main__":
    run_script(
        main,
        snakemake.log[0],  # noqa: F821
        fa=snakemake.output.fa,  # noqa: F821
        atlas=snakemake.output.atlas,  # noqa: F821
        labels=snakemake.output.labels,  # noqa: F821
        wm_mask=snakemake.output.wm_mask,  # noqa: F821
        tissue=snakemake.output.tissue,  # noqa: F821
        texture=snakemake.output.texture,  # noqa: F821
        planted=snakemake.output.planted,  # noqa: F821
        synthetic=dict(snakemake.params.synthetic),  # noqa: F821
        seed=int(snakemake.params.seed),  # noqa: F821
    )
