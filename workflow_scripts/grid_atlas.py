"""Rule grid_atlas: the atlas, WM mask and template brain mask on the model grid (+ a copy of the labels)."""

from dmriscope.io import run_script
from dmriscope.tensors import grid_atlas

if __name__ == "__main__":
    run_script(
        grid_atlas,
        snakemake.log[0],
        atlas=snakemake.input.atlas,
        labels=snakemake.input.labels,
        wm_mask=snakemake.input.wm_mask,
        template=snakemake.input.template,
        grid=list(snakemake.params.grid),
        fa_threshold=float(snakemake.params.fa_threshold),
        out_atlas=snakemake.output.atlas,
        out_labels=snakemake.output.labels,
        out_wm_mask=snakemake.output.wm_mask,
        out_brain_mask=snakemake.output.brain_mask,
    )
