"""Rule render_registration_qc: every subject's registration QC figure (template edges over the registered FA)."""

from dmriscope.io import run_script
from dmriscope.registration_qc import render_overlays

if __name__ == "__main__":
    run_script(
        render_overlays,
        snakemake.log[0],
        registered=list(snakemake.input.registered),
        qc_tsvs=list(snakemake.input.qc_tsvs),
        template=snakemake.input.template,
        pngs=list(snakemake.output.pngs),
    )
