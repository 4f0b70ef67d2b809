"""Rule fit_dki: batched DKI fit of one subject's DWI -> FA, MD (mm^2/s), MK in native space, and fit.json."""

from dmriscope.config import METRICS
from dmriscope.dki import fit_dki_files
from dmriscope.io import run_script

if __name__ == "__main__":
    run_script(
        fit_dki_files,
        snakemake.log[0],
        dwi=snakemake.input.dwi,
        bval=snakemake.input.bval,
        bvec=snakemake.input.bvec,
        mask=snakemake.input.mask,
        out_maps=dict(zip(METRICS, snakemake.output.maps)),
        settings_path=snakemake.output.settings,
        dki_cfg=dict(snakemake.params.dki),
        template_fa=snakemake.input.get("template") or None,
        subject=snakemake.params.subject,
    )
