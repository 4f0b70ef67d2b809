"""Rule prepare_template (synthetic cohort): the phantom's FA template, 48-region atlas, masks and planted effects."""

from dmriscope.cohort.synthetic_template import prepare_template
from dmriscope.io import run_script

if __name__ == "__main__":
    run_script(
        prepare_template,
        snakemake.log[0],
        out_fa=snakemake.output.fa,
        out_atlas=snakemake.output.atlas,
        out_labels=snakemake.output.labels,
        out_wm_mask=snakemake.output.wm_mask,
        out_tissue=snakemake.output.tissue,
        out_texture=snakemake.output.texture,
        out_planted=snakemake.output.planted,
        synthetic=dict(snakemake.params.synthetic),
        seed=int(snakemake.params.seed),
    )
