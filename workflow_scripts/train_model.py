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
    atlas: str,
    wm_mask: str,
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
        atlas=atlas,
        wm_mask=wm_mask,
    )


if __name__ == "__main__":
    run_script(
        main,
        snakemake.log[0],
        model=snakemake.wildcards.model,
        tensor=snakemake.input.tensor,
        index=snakemake.input.index,
        norm=snakemake.input.norm,
        brain_mask=snakemake.input.brain_mask,
        split_digest=snakemake.input.split_digest,
        pretrained=snakemake.input.pretrained,
        train=dict(snakemake.params.train),
        models=dict(snakemake.params.models),
        grid=list(snakemake.params.grid),
        checkpoint_dir=snakemake.params.checkpoint_dir,
        best=snakemake.output.best,
        history=snakemake.output.history,
        hparams=snakemake.output.hparams,
        threads=snakemake.threads,
        atlas=snakemake.input.atlas,
        wm_mask=snakemake.input.wm_mask,
    )
