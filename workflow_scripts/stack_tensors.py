"""Rule stack_tensors: one metric's registered maps on the model grid, as a memory-mapped .npy + index + norm."""

from dmriscope.io import run_script
from dmriscope.tensors import stack_tensors


def main(
    maps: list[str],
    subjects: list[str],
    split: str,
    template: str,
    brain_mask: str,
    tensor: str,
    index: str,
    norm: str,
    norm_voxels: str,
    normalisation: str,
    clip: float | None,
) -> None:
    stack_tensors(maps, subjects, split, template, brain_mask, tensor, index, norm, norm_voxels, normalisation, clip)


if __name__ == "__main__":
    run_script(
        main,
        snakemake.log[0],
        maps=list(snakemake.input.maps),
        subjects=list(snakemake.params.subjects),
        split=snakemake.input.split,
        template=snakemake.input.template,
        brain_mask=snakemake.input.brain_mask,
        tensor=snakemake.output.tensor,
        index=snakemake.output.index,
        norm=snakemake.output.norm,
        norm_voxels=snakemake.output.norm_voxels,
        normalisation=snakemake.params.normalisation,
        clip=snakemake.params.clip,
    )
