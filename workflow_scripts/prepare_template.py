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
        snakemake.log[0],
        fa=snakemake.output.fa,
        atlas=snakemake.output.atlas,
        labels=snakemake.output.labels,
        wm_mask=snakemake.output.wm_mask,
        tissue=snakemake.output.tissue,
        texture=snakemake.output.texture,
        planted=snakemake.output.planted,
        synthetic=dict(snakemake.params.synthetic),
        seed=int(snakemake.params.seed),
    )
