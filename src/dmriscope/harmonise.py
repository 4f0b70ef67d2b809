"""Brain-size harmonisation of the DWI before the DKI fit (config ``dki.harmonise``; off by default).

Why: every brain is imaged at the same voxel size, so a larger brain spans more voxels per structure. After
registration its maps are sharper in template units *and* less noisy per template volume (more independent noise
samples per structure) than a smaller brain's: two second-order size effects that no regression of voxel values
removes and that a CNN reads (README, "Brain size"). This module degrades every subject, in native space, to one
common effective resolution and noise level in template units, the way multi-site studies harmonise scanners of
different resolution and SNR (README, "Brain size": measured, it does not take size out of what the CNNs read,
so it is off by default):

* scale: s = (V / V_template)^(1/3), V the native brain-mask volume and V_template the template brain's (voxels
  with template FA > 0), the registration's linear scale;
* resolution: each DWI volume is blurred inside the brain (normalised convolution) by a Gaussian whose SD along an
  axis of z mm is sqrt((psf_mm s)^2 - z^2/12) / z voxels, so that the voxel's box PSF (SD z / sqrt(12)) plus the
  kernel is ``psf_mm`` *template* mm for every brain. The voxel noise is white, so it sees the kernel only, which
  is then narrower in template units for the smaller brain (the box is wider there); ``voxel_psf: false`` makes
  the kernel alone psf_mm template mm instead: the noise's correlation equal for every brain, the anatomy's PSF
  then differing by the voxel box (sqrt(psf^2 + z^2 / (12 s^2)) template mm). One of the two can be equal;
* noise (``noise: coloured``, the default): after the blur, a Gaussian field is added whose power spectrum is
  the target's minus the subject's own, so that every brain ends with one noise field in template units, in
  variance *and* correlation: that of white noise at the voxel size of a brain at ``min_scale`` (the smallest
  scale the cohort may hold, the noisiest per template volume) blurred by that brain's kernel. On this subject's
  grid the target has per-sample spectrum sigma^2 (s / s_min)^3 prod_a G(nu_a; k_min,a s / s_min), G the
  (aliased) spectrum of a continuous Gaussian of that SD in voxels; the subject's own noise has
  sigma^2 prod_a |H_k,a(nu_a)|^2, H the discrete kernel actually applied. The difference is >= 0 because the
  target is wider at nu = 0 ((s / s_min)^3 >= 1) and narrower in its kernel (k_min s / s_min <= k) - with the
  voxel box counted, where the kernel is wider in template units for a larger brain. ``noise: white`` adds white
  noise before the blur that equalises only the variance: sigma sqrt(g(min_scale) / g(s) - 1), g the variance
  gain of the discrete kernel. sigma is the acquisition's noise SD, estimated from the repeated b=0 volumes
  (`b0_noise_sd`). A brain below ``min_scale`` is an error that names it and the key.

Uses no label and no other subject: each subject's job needs only its own files and the template.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Mapping
from typing import Any

import nibabel as nib
import numpy as np
from scipy import fft, stats
from scipy.ndimage import gaussian_filter, gaussian_filter1d

from dmriscope.io import InputError

B0_MAX = 50.0  # s/mm^2: volumes at or below this count as b=0 for the noise estimate
VOLUME_BLOCK = 16  # DWI volumes blurred at once (memory ~ grid x block x 4 bytes x 5)
NOISE_MODES = ("coloured", "white")
ALIASES = 3  # spectral replicas summed on each side when a continuous Gaussian's spectrum is sampled


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


def _taps(sigma: float) -> np.ndarray:
    """The 1-D weights of scipy's Gaussian filter of SD ``sigma`` voxels (truncate=4.0, its default)."""
    half = int(4.0 * sigma + 0.5)
    delta = np.zeros(2 * half + 1)
    delta[half] = 1.0
    return gaussian_filter1d(delta, sigma, mode="constant")


def noise_gain(sigma: tuple[float, ...]) -> float:
    """Variance of unit white noise after scipy's Gaussian filter of per-axis SD ``sigma`` (the sum of the squared
    weights of the separable discrete kernel)."""
    return math.prod(float(np.sum(_taps(s) ** 2)) for s in sigma)


def _frequencies(n: int, last: bool) -> np.ndarray:
    """Frequencies (cycles per voxel) of an n-point axis in scipy.fft.rfftn's layout (the last axis halved)."""
    return fft.rfftfreq(n) if last else fft.fftfreq(n)


def kernel_power(sigma: float, n: int, last: bool = False) -> np.ndarray:
    """|H(nu)|^2 of the discrete Gaussian kernel of SD ``sigma`` voxels on an n-point periodic axis."""
    taps = _taps(sigma)
    periodic = np.zeros(n)
    np.add.at(periodic, np.arange(taps.size) % n, taps)  # a kernel longer than the axis wraps around it
    return np.abs(fft.rfft(periodic) if last else fft.fft(periodic)) ** 2


def gaussian_power(sigma: float, n: int, last: bool = False) -> np.ndarray:
    """The spectrum of a continuous Gaussian of SD ``sigma`` voxels sampled on an n-point axis (aliases summed)."""
    nu = _frequencies(n, last)
    return sum(np.exp(-4.0 * math.pi**2 * sigma**2 * (nu + m) ** 2) for m in range(-ALIASES, ALIASES + 1))


def coloured_amplitude(
    shape: tuple[int, ...], own: tuple[float, ...], target: tuple[float, ...], volume_ratio: float
) -> np.ndarray:
    """sqrt of the per-sample spectrum to add, per unit acquisition variance, in rfftn layout over ``shape``:
    volume_ratio x prod G(target) - prod |H(own)|^2, clipped at 0 (it is >= 0 up to discretisation)."""
    own_power = target_power = np.ones((1,) * len(shape))
    for axis, (n, k_own, k_target) in enumerate(zip(shape, own, target)):
        last = axis == len(shape) - 1
        along = [1] * len(shape)
        along[axis] = -1
        own_power = own_power * kernel_power(k_own, n, last).reshape(along)
        target_power = target_power * gaussian_power(k_target, n, last).reshape(along)
    return np.sqrt(np.clip(volume_ratio * target_power - own_power, 0.0, None))


def coloured_noise(rng: np.random.Generator, amplitude: np.ndarray, shape: tuple[int, ...], count: int) -> np.ndarray:
    """``count`` independent Gaussian fields over ``shape`` (stacked last, float32) whose per-sample spectrum is
    amplitude^2 (periodic: the fields wrap around the grid's edges, which lie outside the brain)."""
    white = rng.standard_normal(shape + (count,), dtype=np.float32)
    axes = tuple(range(len(shape)))
    spectrum = fft.rfftn(white, axes=axes)
    spectrum *= amplitude[..., None].astype(np.float32)
    return fft.irfftn(spectrum, s=shape, axes=axes)


def b0_noise_sd(signals: np.ndarray, bvals: np.ndarray) -> float:
    """Noise SD of the acquisition from the b=0 volumes (columns of ``signals``): the median over voxels of the
    variance across b0s, divided by the median of chi^2 / df so that it estimates sigma^2 without the ~6% low bias
    of a median of SDs at 12 b0s (which would leave the larger brains, noisier by added noise, below the rest)."""
    b0 = np.asarray(bvals) <= B0_MAX
    if b0.sum() < 2:
        raise InputError(f"dki.harmonise needs at least 2 b=0 volumes to estimate the noise; found {int(b0.sum())}")
    df = int(b0.sum()) - 1
    variance = np.median(np.var(signals[:, b0], axis=1, ddof=1))
    return float(math.sqrt(variance / (stats.chi2.median(df) / df)))


def _mean_power(amplitude: np.ndarray, n_last: int) -> float:
    """Variance of `coloured_noise` of this amplitude: the mean of amplitude^2 over the full (not halved) spectrum."""
    weights = np.full(amplitude.shape[-1], 2.0)
    weights[0] = 1.0
    if n_last % 2 == 0:
        weights[-1] = 1.0
    return float(np.sum(amplitude**2 * weights) / (amplitude[..., 0].size * n_last))


def _settings(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """The ``dki.harmonise`` settings with the schema's defaults (a caller may pass the section without them)."""
    return {
        "psf_mm": float(cfg["psf_mm"]), "min_scale": float(cfg["min_scale"]),
        "voxel_psf": bool(cfg.get("voxel_psf", True)), "noise": cfg.get("noise", "coloured"),
    }  # fmt: skip


def _noise_plan(
    shape: tuple[int, ...], zooms: tuple[float, ...], scale: float, settings: Mapping[str, Any], noise_sd: float
) -> tuple[tuple[float, ...], float, np.ndarray | None, float]:
    """(kernel SD per axis in voxels, SD of white noise to add before the blur, amplitude of coloured noise to add
    after it or None, SD of the noise added) for one subject; ``settings`` from `_settings`."""
    psf_mm, min_scale, voxel_psf = settings["psf_mm"], settings["min_scale"], settings["voxel_psf"]
    kernel = kernel_sd_voxels(scale, psf_mm, zooms, voxel_psf)
    floor = kernel_sd_voxels(min_scale, psf_mm, zooms, voxel_psf)
    if settings["noise"] == "white":
        white_sd = noise_sd * math.sqrt(max(noise_gain(floor) / noise_gain(kernel) - 1.0, 0.0))
        return kernel, white_sd, None, white_sd
    ratio = scale / min_scale
    amplitude = coloured_amplitude(shape, kernel, tuple(k * ratio for k in floor), ratio**3) * noise_sd
    return kernel, 0.0, amplitude, math.sqrt(_mean_power(amplitude, shape[-1]))


def harmonise_signals(
    signals: np.ndarray,
    brain: np.ndarray,
    zooms: tuple[float, ...],
    bvals: np.ndarray,
    scale: float,
    cfg: Mapping[str, Any],
    seed_key: str,
) -> dict[str, Any]:
    """In place: blur every volume of the masked ``signals`` (n_brain, n_volumes) inside ``brain`` and add the
    equalising noise. Returns what was done (for fit.json). ``seed_key`` (the subject) seeds the added noise."""
    settings = _settings(cfg)
    if scale < settings["min_scale"]:
        raise InputError(f"{seed_key}: brain scale {scale:.3f} is below dki.harmonise.min_scale {cfg['min_scale']}")
    if settings["noise"] not in NOISE_MODES:
        raise InputError(f"dki.harmonise.noise must be one of {NOISE_MODES}, not {settings['noise']!r}")
    noise_sd = b0_noise_sd(signals, bvals)
    kernel, white_sd, amplitude, added_sd = _noise_plan(brain.shape, zooms, scale, settings, noise_sd)
    rng = np.random.default_rng(zlib.crc32(seed_key.encode()))
    weight = gaussian_filter(brain.astype(np.float32), kernel, mode="constant")[brain]
    for start in range(0, signals.shape[1], VOLUME_BLOCK):
        block = signals[:, start : start + VOLUME_BLOCK]
        if white_sd:
            block += white_sd * rng.standard_normal(block.shape, dtype=np.float32)
        volumes = np.zeros(brain.shape + (block.shape[1],), dtype=np.float32)
        volumes[brain] = block
        blurred = gaussian_filter(volumes, tuple(kernel) + (0.0,), mode="constant")[brain] / weight[:, None]
        if amplitude is not None and added_sd > 0:
            blurred += coloured_noise(rng, amplitude, brain.shape, block.shape[1])[brain]
        block[...] = np.maximum(blurred, 0.0)
    return {
        "scale": scale, **settings, "kernel_sd_voxels": list(kernel), "noise_sd": noise_sd, "added_noise_sd": added_sd,
    }  # fmt: skip
