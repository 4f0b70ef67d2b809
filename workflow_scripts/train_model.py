"""Rule train_model: train one model on one metric (resumable; the resume state is not a declared output)."""

from dmriscope.io import run_script
from dmriscope.train_run import train_model_files


def _single(paths) -> str | None:
    """The pretrained encoder's path: the rule gives one file, or none for models trained from scratch."""
    return paths if isinstance(paths, str) else (paths[0] if paths else None)


if __name__ == "__main__":
    run_script(
        train_model_files,
        snakemake.log[0],
        model=snakemake.wildcards.model,
        tensor=snakemake.input.tensor,
        index=snakemake.input.index,
        norm=snakemake.input.norm,
        norm_voxels=snakemake.input.norm_voxels,
        brain_mask=snakemake.input.brain_mask,
        split_digest=snakemake.input.split_digest,
        pretrained=_single(snakemake.input.pretrained),
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
