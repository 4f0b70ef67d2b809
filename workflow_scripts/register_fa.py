"""Rule register_fa: one subject's FA onto the FA template (transforms, QC TSV + PNG), then MD and MK carried along."""

from typing import Any

from dmriscope.io import run_script
from dmriscope.registration import register_fa, warp_maps


def main(
    fa: str,
    others: list[str],
    template: str,
    out_fa: str,
    out_others: list[str],
    out_affine: str,
    out_warp: str,
    qc_tsv: str,
    qc_png: str,
    registration: dict[str, Any],
    threads: int,
    subject: str,
) -> None:
    register_fa(
        fa,
        template,
        out_fa,
        out_affine,
        out_warp,
        qc_tsv,
        qc_png,
        backend=registration["backend"],
        seed=registration["seed"],
        ants_transform=registration["ants_transform"],
        fnirt_config=registration["fnirt_config"],
        threads=threads,
        subject=subject,
    )
    warp_maps(others, template, out_affine, out_warp, out_others, backend=registration["backend"], threads=threads)


if __name__ == "__main__":
    run_script(
        main,
        snakemake.log[0],
        fa=snakemake.input.fa,
        others=list(snakemake.input.others),
        template=snakemake.input.template,
        out_fa=snakemake.output.fa,
        out_others=list(snakemake.output.others),
        out_affine=snakemake.output.affine,
        out_warp=snakemake.output.warp,
        qc_tsv=snakemake.output.qc_tsv,
        qc_png=snakemake.output.qc_png,
        registration=snakemake.params.registration,
        threads=snakemake.threads,
        subject=f"sub-{snakemake.wildcards.subject}",
    )
