"""Rule fit_dki: batched DKI fit of one subject's DWI -> FA, MD (mm^2/s), MK in native space, and fit.json."""

from dmriscope.config import METRICS
from dmriscope.dki import fit_dki_files
from dmriscope.io import run_script


def main(dwi: str, bval: str, bvec: str, mask: str, maps: list[str], settings: str, dki: dict) -> None:
    fit_dki_files(dwi, bval, bvec, mask, dict(zip(METRICS, maps)), settings, dki)


if __name__ == "__main__":
    run_script(
        main,
        snakemake.log[0],  # noqa: F821
        dwi=snakemake.input.dwi,  # noqa: F821
        bval=snakemake.input.bval,  # noqa: F821
        bvec=snakemake.input.bvec,  # noqa: F821
        mask=snakemake.input.mask,  # noqa: F821
        maps=list(snakemake.output.maps),  # noqa: F821
        settings=snakemake.output.settings,  # noqa: F821
        dki=dict(snakemake.params.dki),  # noqa: F821
    )
