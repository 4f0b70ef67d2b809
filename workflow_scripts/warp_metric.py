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
        snakemake.log[0],
        maps=list(snakemake.input.maps),
        template=snakemake.input.template,
        affine=snakemake.input.affine,
        warp=snakemake.input.warp,
        outputs=list(snakemake.output.maps),
        registration=snakemake.params.registration,
        threads=snakemake.threads,
    )
