"""Rule register_fa: one subject's FA onto the FA template (transforms, QC TSV), then MD and MK carried along."""

from dmriscope.io import run_script
from dmriscope.registration import register_subject

if __name__ == "__main__":
    run_script(
        register_subject,
        snakemake.log[0],
        fa=snakemake.input.fa,
        others=list(snakemake.input.others),
        template=snakemake.input.template,
        out_fa=snakemake.output.fa,
        out_others=list(snakemake.output.others),
        out_affine=snakemake.output.affine,
        out_warp=snakemake.output.warp,
        qc_tsv=snakemake.output.qc_tsv,
        registration=snakemake.params.registration,
        threads=snakemake.threads,
        subject=f"sub-{snakemake.wildcards.subject}",
    )
