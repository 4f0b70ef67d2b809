"""Experiment (issue 19): equalise every brain's point-spread function in template units, then re-register.

A larger brain imaged at the same voxel size spans more voxels per structure, so after registration its maps are
sharper in template units than a smaller brain's (README, "Brain size"). This script blurs each subject's *native*
DKI maps, inside its native brain mask, so that every brain's Gaussian-equivalent PSF is ``--psf-mm`` x s_i native
mm, s_i = (V_i / median V)^(1/3) its linear scale relative to the cohort's median brain: the same ``--psf-mm`` in
template units for every brain. The voxel's own box PSF counts as voxel / sqrt(12) per axis, so the kernel's SD
along an axis of size z mm is sqrt((psf_mm s_i)^2 - z^2 / 12) / z voxels.

It rewrites ``results/dki/sub-*/{FA,MD,MK}.nii.gz`` of a run directory in place (the first call keeps each
original as ``*.orig.nii.gz`` and every call blurs from it, so a second call with another width starts again from
the fit) and writes ``results/dki/native_blur.tsv`` (subject, volume, scale, kernel SDs). A later ``snakemake`` in
that directory sees the newer maps and re-runs registration and everything after it. It is an experiment, not a
workflow option: README says what it measured and why it is not a config key.

    .venv/bin/python benchmarks/native_blur.py RUN_DIR [--psf-mm 3.0]
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd

from dmriscope.io import progress
from dmriscope.smoothness import masked_blur

METRICS = ("FA", "MD", "MK")


def brain_volume_ml(mask_path: Path) -> float:
    """Native brain-mask volume (ml) of one subject."""
    img = nib.load(mask_path)
    return float(np.count_nonzero(np.asanyarray(img.dataobj))) * float(np.prod(img.header.get_zooms()[:3])) / 1e3


def kernel_sd_voxels(scale: float, psf_mm: float, zooms: tuple[float, ...]) -> tuple[float, ...]:
    """Per-axis Gaussian SD (voxels) that brings a voxel's box PSF (z / sqrt(12)) up to psf_mm x scale."""
    out = []
    for z in zooms:
        target = psf_mm * scale
        if target**2 <= z**2 / 12:
            raise ValueError(f"--psf-mm {psf_mm} x scale {scale:.3f} is below the voxel's own PSF ({z} mm voxels)")
        out.append(math.sqrt(target**2 - z**2 / 12) / z)
    return tuple(out)


def blur_subject(dki_dir: Path, mask: np.ndarray, sigma: tuple[float, ...]) -> None:
    """Blur one subject's native maps from their kept originals, in place, keeping dtype and header."""
    for metric in METRICS:
        path = dki_dir / f"{metric}.nii.gz"
        orig = dki_dir / f"{metric}.orig.nii.gz"
        if not orig.exists():
            path.rename(orig)
        img = nib.load(orig)
        data = np.asanyarray(img.dataobj)
        blurred = masked_blur(data, mask, sigma).astype(data.dtype)
        tmp = dki_dir / f".{metric}.tmp.nii.gz"
        nib.save(nib.Nifti1Image(blurred, img.affine, img.header), tmp)
        tmp.rename(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="a run directory (holds results/dki and results/raw)")
    parser.add_argument("--psf-mm", type=float, default=3.0, help="target Gaussian-equivalent PSF SD, template mm")
    args = parser.parse_args()
    dki_dirs = sorted((args.run / "results" / "dki").glob("sub-*"))
    if not dki_dirs:
        raise SystemExit(f"{args.run / 'results' / 'dki'}: no sub-* directories")
    masks = {d.name: args.run / "results" / "raw" / d.name / "brain_mask.nii.gz" for d in dki_dirs}
    volumes = {name: brain_volume_ml(path) for name, path in masks.items()}
    median = float(np.median(list(volumes.values())))
    rows = []
    for dki_dir in progress(dki_dirs, desc="native blur"):
        mask_img = nib.load(masks[dki_dir.name])
        scale = (volumes[dki_dir.name] / median) ** (1 / 3)
        sigma = kernel_sd_voxels(scale, args.psf_mm, mask_img.header.get_zooms()[:3])
        blur_subject(dki_dir, np.asanyarray(mask_img.dataobj) > 0, sigma)
        rows.append({"subject": dki_dir.name, "volume_ml": volumes[dki_dir.name], "scale": scale, "sigma_x": sigma[0]})
    table = pd.DataFrame(rows)
    table.to_csv(args.run / "results" / "dki" / "native_blur.tsv", sep="\t", index=False)
    print(table.describe().to_string(float_format=lambda v: f"{v:.4f}"))


if __name__ == "__main__":
    main()
