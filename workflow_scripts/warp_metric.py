"""Rule warp_metric: carry one subject's MD and MK onto the template grid with register_fa's transforms."""

from typing import Any

from dmriscope.io import run_script
from dmriscope.registration import warp_maps


def main(
    maps: list[str],
    template: str,
    affine: str,
    warp: str,
    outputs: list[str],
    registration: dict[str, Any],
    threads: int,
) -> None:
    warp_maps(maps, template, affine, warp, outputs, backend=registration["backend"], threads=threads)


if __name__ == "__main__":
    run_script(
        main,
        snakemake.log[0],  # noqa: F821
        maps=list(snakemake.input.maps),  # noqa: F821
        template=snakemake.input.template,  # noqa: F821
        affine=snakemake.input.affine,  # noqa: F821
        warp=snakemake.input.warp,  # noqa: F821
        outputs=list(snakemake.output.maps),  # noqa: F821
        registration=snakemake.params.registration,  # noqa: F821
        threads=snakemake.threads,  # noqa: F821
    )
