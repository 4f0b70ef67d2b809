"""Rule train_model: train one model on one metric (resumable; the resume state is not a declared output)."""

from typing import Any

from dmriscope.engine import train_model_files
from dmriscope.io import run_script


def main(
    model: str,
    tensor: str,
    index: str,
    norm: str,
    brain_mask: str,
    split_digest: str,
    pretrained: str | list[str],
    train: dict[str, Any],
    models: dict[str, Any],
    grid: list[int],
    checkpoint_dir: str,
    best: str,
    history: str,
    hparams: str,
    threads: int,
) -> None:
    train_model_files(
        model,
        tensor,
        index,
        norm,
        brain_mask,
        split_digest,
        (pretrained if isinstance(pretrained, str) else (pretrained[0] if pretrained else None)),
        train,
        models,
        grid,
        checkpoint_dir,
        best,
        history,
        hparams,
        threads,
    )


if __name__ == "__main__":
    run_script(
        main,
        snakemake.log[0],  # noqa: F821
        model=snakemake.wildcards.model,  # noqa: F821
        tensor=snakemake.input.tensor,  # noqa: F821
        index=snakemake.input.index,  # noqa: F821
        norm=snakemake.input.norm,  # noqa: F821
        brain_mask=snakemake.input.brain_mask,  # noqa: F821
        split_digest=snakemake.input.split_digest,  # noqa: F821
        pretrained=snakemake.input.pretrained,  # noqa: F821
        train=dict(snakemake.params.train),  # noqa: F821
        models=dict(snakemake.params.models),  # noqa: F821
        grid=list(snakemake.params.grid),  # noqa: F821
        checkpoint_dir=snakemake.params.checkpoint_dir,  # noqa: F821
        best=snakemake.output.best,  # noqa: F821
        history=snakemake.output.history,  # noqa: F821
        hparams=snakemake.output.hparams,  # noqa: F821
        threads=snakemake.threads,  # noqa: F821
    )
