"""Rule prepare_template (real data): FMRIB58 FA template and JHU-ICBM atlas from $FSLDIR or given paths."""

from dmriscope.io import run_script
from dmriscope.template import prepare_template_from_config

if __name__ == "__main__":
    run_script(
        prepare_template_from_config,
        snakemake.log[0],
        template=dict(snakemake.params.template),
        backend=snakemake.params.backend,
        fa_out=snakemake.output.fa,
        atlas_out=snakemake.output.atlas,
        labels_out=snakemake.output.labels,
        wm_mask_out=snakemake.output.wm_mask,
    )
