"""Brain-size harmonisation of the DWI before the DKI fit (config ``dki.harmonise``; off by default).

Why: every brain is imaged at the same voxel size, so a larger brain spans more voxels per structure. After
registration its maps are sharper in template units *and* less noisy per template volume (more independent noise
samples per structure) than a smaller brain's: two second-order size effects that no regression of voxel values
removes and that a CNN reads (README, "Brain size"). This module degrades every subject, in native space, to one
common effective resolution and noise level in template units, the way multi-site studies harmonise scanners of
different resolution and SNR:

* scale: s = (V / V_template)^(1/3), V the native brain-mask volume and V_template the template brain's (voxels
  with template FA > 0), the registration's linear scale;
* resolution: each DWI volume is blurred inside the brain (normalised convolution) by a Gaussian whose SD along an
  axis of z mm is sqrt((psf_mm s)^2 - z^2/12) / z voxels, so that the voxel's box PSF (SD z / sqrt(12)) plus the
  kernel is ``psf_mm`` *template* mm for every brain. The voxel noise is white, so it sees the kernel only, which
  is then narrower in template units for the smaller brain (the box is wider there); ``voxel_psf: false`` makes
  the kernel alone psf_mm template mm instead: the noise's correlation equal for every brain, the anatomy's PSF
  then differing by the voxel box (sqrt(psf^2 + z^2 / (12 s^2)) template mm). One of the two can be equal;
* noise: before the blur, Gaussian noise is added so that the blurred noise variance equals that of a brain at
  ``min_scale`` (the smallest scale the cohort may hold, whose kernel is narrowest and keeps the most noise):
  added SD = sigma sqrt(g(min_scale) / g(s) - 1), g the white-noise variance gain of the discrete kernel and
  sigma the acquisition's noise SD, estimated from the repeated b=0 volumes (median over brain voxels of their
  SD across b0s). A brain below ``min_scale`` is an error that names it and the key.

Uses no label and no other subject: each subject's job needs only its own files and the template.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Mapping
from typing import Any

import nibabel as nib
import numpy as np
from scipy.ndimage import gaussian_filter, gaussian_filter1d

from dmriscope.io import InputError

B0_MAX = 50.0  # s/mm^2: volumes at or below this count as b=0 for the noise estimate
VOLUME_BLOCK = 16  # DWI volumes blurred at once (memory ~ grid x block x 4 bytes x 3)


def template_volume_ml(template_fa: str) -> float:
    """Brain volume (ml) of the template: voxels with FA > 0."""
    img = nib.load(template_fa)
    return float(np.count_nonzero(np.asanyarray(img.dataobj) > 0)) * float(np.prod(img.header.get_zooms()[:3])) / 1e3


def kernel_sd_voxels(
    scale: float, psf_mm: float, zooms: tuple[float, ...], voxel_psf: bool = True
) -> tuple[float, ...]:
    """Per-axis Gaussian SD (voxels) that brings a voxel's box PSF (z / sqrt(12) mm) up to psf_mm x scale mm, or
    with ``voxel_psf`` false the kernel alone of psf_mm x scale mm (what the white voxel noise is blurred by)."""
    target = psf_mm * scale
    out = []
    for z in zooms:
        box = z**2 / 12 if voxel_psf else 0.0
        if target**2 <= box:
            raise ValueError(f"dki.harmonise.psf_mm {psf_mm} x scale {scale:.3f} is at or below a {z} mm voxel's PSF")
        out.append(math.sqrt(target**2 - box) / z)
    return tuple(out)


def noise_gain(sigma: tuple[float, ...]) -> float:
    """Variance of unit white noise after scipy's Gaussian filter of per-axis SD ``sigma`` (the sum of the squared
    weights of the separable discrete kernel)."""
    gain = 1.0
    for s in sigma:
        half = int(4.0 * s + 0.5)  # scipy's default truncate=4.0
        delta = np.zeros(2 * half + 1)
        delta[half] = 1.0
        gain *= float(np.sum(gaussian_filter1d(delta, s, mode="constant") ** 2))
    return gain


def b0_noise_sd(signals: np.ndarray, bvals: np.ndarray) -> float:
    """Noise SD of the acquisition: median over voxels of the SD across the b=0 volumes (columns of ``signals``)."""
    b0 = np.asarray(bvals) <= B0_MAX
    if b0.sum() < 2:
        raise InputError(f"dki.harmonise needs at least 2 b=0 volumes to estimate the noise; found {int(b0.sum())}")
    return float(np.median(np.std(signals[:, b0], axis=1, ddof=1)))


def harmonise_signals(
    signals: np.ndarray,
    brain: np.ndarray,
    zooms: tuple[float, ...],
    bvals: np.ndarray,
    scale: float,
    cfg: Mapping[str, Any],
    seed_key: str,
) -> dict[str, Any]:
    """In place: add the equalising noise to the masked ``signals`` (n_brain, n_volumes) and blur every volume
    inside ``brain``. Returns what was done (for fit.json). ``seed_key`` (the subject) seeds the added noise."""
    psf_mm, min_scale = float(cfg["psf_mm"]), float(cfg["min_scale"])
    if scale < min_scale:
        raise InputError(f"{seed_key}: brain scale {scale:.3f} is below dki.harmonise.min_scale {min_scale}")
    voxel_psf = bool(cfg.get("voxel_psf", True))
    sigma_kernel = kernel_sd_voxels(scale, psf_mm, zooms, voxel_psf)
    gain, gain_floor = noise_gain(sigma_kernel), noise_gain(kernel_sd_voxels(min_scale, psf_mm, zooms, voxel_psf))
    noise_sd = b0_noise_sd(signals, bvals)
    added_sd = noise_sd * math.sqrt(max(gain_floor / gain - 1.0, 0.0))
    rng = np.random.default_rng(zlib.crc32(seed_key.encode()))
    weight = gaussian_filter(brain.astype(np.float32), sigma_kernel, mode="constant")[brain]
    for start in range(0, signals.shape[1], VOLUME_BLOCK):
        block = signals[:, start : start + VOLUME_BLOCK]
        block += added_sd * rng.standard_normal(block.shape, dtype=np.float32)
        volumes = np.zeros(brain.shape + (block.shape[1],), dtype=np.float32)
        volumes[brain] = block
        blurred = gaussian_filter(volumes, tuple(sigma_kernel) + (0.0,), mode="constant")
        block[...] = np.maximum(blurred[brain] / weight[:, None], 0.0)
    return {
        "scale": scale, "psf_mm": psf_mm, "min_scale": min_scale, "voxel_psf": voxel_psf,
        "kernel_sd_voxels": list(sigma_kernel), "noise_sd": noise_sd, "added_noise_sd": added_sd,
    }  # fmt: skip
