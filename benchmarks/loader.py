"""Samples per second: the memory-mapped tensor store (`dmriscope.tensors.VolumeDataset`) against loading each
subject's .nii.gz with nibabel + `to_grid` + normalisation, per sample. Target: the store >= 20x faster.

A temporary cohort of random maps at the synthetic template size (38x46x38 -> grid 36x48x48) or, with --paper, at
FMRIB58's 182x218x182 -> 180x224x224 is written, stacked with `stack_tensors`, and read back in a shuffled order
(files are in the page cache for both methods, so decompression and copying are what is timed). Prints a table;
exits 1 when the speed-up is below the target.

    .venv/bin/python benchmarks/loader.py [--subjects 40] [--paper] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from dmriscope.io import load_nifti, save_nifti
from dmriscope.tensors import Normaliser, grid_atlas, open_dataset, stack_tensors, to_grid

TARGET = 20.0


def write_cohort(folder: Path, n: int, shape: tuple[int, int, int], grid: tuple[int, int, int]) -> list[str]:
    """Template, atlas, maps (float32 .nii.gz), split; the tensor store and masks under folder/t. Returns map paths."""
    rng = np.random.default_rng(0)
    affine = np.eye(4)
    fa = np.zeros(shape, np.float32)
    inner = tuple(slice(s // 8, s - s // 8) for s in shape)
    fa[inner] = 0.4
    save_nifti(fa, affine, folder / "template_FA.nii.gz")
    save_nifti((fa > 0).astype(np.int16), affine, folder / "atlas.nii.gz", dtype=np.int16)
    (folder / "labels.tsv").write_text("index\tname\n1\tregion\n")
    subjects = [f"b{i:04d}" for i in range(n)]
    paths = []
    for subject in subjects:
        path = folder / f"sub-{subject}" / "MD.nii.gz"
        save_nifti((rng.normal(1e-3, 2e-4, shape) * (fa > 0)).astype(np.float32), affine, path)
        paths.append(str(path))
    split = pd.DataFrame(
        {
            "subject": subjects,
            "sex": ["M", "F"] * (n // 2) + ["M"] * (n % 2),
            "age": 25,
            "age_bin": "22-25",
            "set": "train",
        }
    )
    split.to_csv(folder / "split.tsv", sep="\t", index=False)
    t = folder / "t"
    grid_atlas(
        atlas=folder / "atlas.nii.gz",
        labels=folder / "labels.tsv",
        wm_mask=folder / "atlas.nii.gz",
        template=folder / "template_FA.nii.gz",
        grid=grid,
        fa_threshold=0.0,
        out_atlas=t / "atlas.npy",
        out_labels=t / "labels.tsv",
        out_wm_mask=t / "wm.npy",
        out_brain_mask=t / "brain_mask.npy",
    )
    stack_tensors(
        maps=paths,
        subjects=subjects,
        split=folder / "split.tsv",
        template=folder / "template_FA.nii.gz",
        brain_mask=t / "brain_mask.npy",
        tensor=t / "MD.npy",
        index=t / "MD_index.tsv",
    )
    store, brain = np.load(t / "MD.npy", mmap_mode="r"), np.load(t / "brain_mask.npy")
    inside = np.asarray(store)[:, brain]  # a global normalisation: the loaders' arithmetic, not the fold statistics
    (t / "MD_norm.json").write_text(
        json.dumps({"mode": "global", "mean": float(inside.mean()), "std": float(inside.std())})
    )
    return paths


def time_store(folder: Path, order: np.ndarray) -> float:
    t = folder / "t"
    dataset = open_dataset(t / "MD.npy", t / "MD_index.tsv", t / "MD_norm.json", t / "brain_mask.npy", ["train"])
    dataset[0]  # open the memmap outside the timing
    start = time.perf_counter()
    for i in order:
        dataset[int(i)]
    return len(order) / (time.perf_counter() - start)


def time_nifti(folder: Path, paths: list[str], order: np.ndarray, grid: tuple[int, int, int]) -> float:
    t = folder / "t"
    normalise = Normaliser.from_files(t / "MD_norm.json").bind(np.load(t / "brain_mask.npy"))  # as the store's
    start = time.perf_counter()
    for i in order:
        volume, _ = load_nifti(paths[int(i)], ndim=3)
        x = torch.from_numpy(normalise(to_grid(volume, grid))).unsqueeze(0)
    assert x.shape == (1, *grid)
    return len(order) / (time.perf_counter() - start)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subjects", type=int, default=40)
    parser.add_argument("--paper", action="store_true", help="FMRIB58 size 182x218x182 -> 180x224x224")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    shape, grid = ((182, 218, 182), (180, 224, 224)) if args.paper else ((38, 46, 38), (36, 48, 48))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        paths = write_cohort(folder, args.subjects, shape, grid)
        order = np.random.default_rng(1).permutation(args.subjects)
        for repeat in range(args.repeats):
            store, nifti = time_store(folder, order), time_nifti(folder, paths, order, grid)
            rows.append(
                {"repeat": repeat + 1, "store samples/s": store, "nibabel samples/s": nifti, "speed-up": store / nifti}
            )
    table = pd.DataFrame(rows)
    print(
        f"grid {'x'.join(map(str, grid))} from {'x'.join(map(str, shape))}, {args.subjects} subjects, "
        f"torch threads {torch.get_num_threads()}"
    )
    print(table.to_string(index=False, float_format=lambda v: f"{v:,.1f}"))
    best = float(table["speed-up"].median())
    print(f"median speed-up {best:.1f}x (target >= {TARGET:.0f}x): {'OK' if best >= TARGET else 'BELOW TARGET'}")
    return 0 if best >= TARGET else 1


if __name__ == "__main__":
    sys.exit(main())
