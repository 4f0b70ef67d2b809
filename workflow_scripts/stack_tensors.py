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
) -> None:
    stack_tensors(maps, subjects, split, template, brain_mask, tensor, index, norm)


if __name__ == "__main__":
    run_script(
        main,
        snakemake.log[0],  # noqa: F821
        maps=list(snakemake.input.maps),  # noqa: F821
        subjects=list(snakemake.params.subjects),  # noqa: F821
        split=snakemake.input.split,  # noqa: F821
        template=snakemake.input.template,  # noqa: F821
        brain_mask=snakemake.input.brain_mask,  # noqa: F821
        tensor=snakemake.output.tensor,  # noqa: F821
        index=snakemake.output.index,  # noqa: F821
        norm=snakemake.output.norm,  # noqa: F821
    )
