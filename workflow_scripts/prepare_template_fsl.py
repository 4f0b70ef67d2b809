"""Rule prepare_template (real data): FMRIB58 FA template and JHU-ICBM atlas from $FSLDIR or given paths."""

from dmriscope.io import run_script
from dmriscope.template import prepare_template_from_config


def main(fa: str, atlas: str, labels: str, wm_mask: str, template: dict, backend: str) -> None:
    prepare_template_from_config(template, backend, fa, atlas, labels, wm_mask)


if __name__ == "__main__":
    run_script(
        main,
        snakemake.log[0],
        fa=snakemake.output.fa,
        atlas=snakemake.output.atlas,
        labels=snakemake.output.labels,
        wm_mask=snakemake.output.wm_mask,
        template=dict(snakemake.params.template),
        backend=snakemake.params.backend,
    )
