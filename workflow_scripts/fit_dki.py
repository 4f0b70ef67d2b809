"""Rule fit_dki: batched DKI fit of one subject's DWI -> FA, MD (mm^2/s), MK in native space, and fit.json."""

from dmriscope.config import METRICS
from dmriscope.dki import fit_dki_files
from dmriscope.io import run_script


def main(dwi: str, bval: str, bvec: str, mask: str, maps: list[str], settings: str, dki: dict) -> None:
    fit_dki_files(dwi, bval, bvec, mask, dict(zip(METRICS, maps)), settings, dki)


if __name__ == "__main__":
    run_script(
        main,
        snakemake.log[0],
        dwi=snakemake.input.dwi,
        bval=snakemake.input.bval,
        bvec=snakemake.input.bvec,
        mask=snakemake.input.mask,
        maps=list(snakemake.output.maps),
        settings=snakemake.output.settings,
        dki=dict(snakemake.params.dki),
    )
