"""The synthetic cohort per subject: a deformed phantom, its true maps and noisy DWI (the template files and
participants.tsv: `dmriscope.cohort.synthetic_template`; this module imports no pandas, for 240 short jobs).

Per subject (everything seeded from (cohort seed, subject ID), one independent stream per purpose):

* microstructure: each region's intra-axonal fraction f = population mean + sex effect (+size/2 subject SDs for
  males, -size/2 for females) + age effect (size subject SDs per decade above 22 years) + N(0, subject_sd); plus a
  smooth texture fixed in template space (texture_sd x a unit-SD field), clipped to [0.05, 0.9];
* geometry: native world point y maps to template point x = y / scale + u(y), scale log-normal around
  sqrt(male_scale) for males and 1 / sqrt(male_scale) for females (SD scale_sd), u a Gaussian-smoothed random
  displacement field (RMS deformation_mm over the brain, smoothing sigma deformation_smoothness_mm).
  Labels and tissue are sampled nearest-neighbour, the texture linearly (scipy.ndimage.map_coordinates), at each
  voxel's centre or, with ``partial_volume_samples`` k > 1, at k^3 sub-voxel points whose mixture is the voxel
  (`dmriscope.cohort.partial_volume`); fibre directions are evaluated at x and carried into native space by the
  inverse Jacobian of the map;
* signal: the DKI signal of the mixture tensors at HCP's scheme (288 volumes), Rician noise of sigma = S0_WM / snr
  (none when ``noiseless``). Written as int16 (rounded) when sigma >= INT16_MIN_SIGMA (default snr 40: sigma 25,
  rounding adds 0.01% to the noise variance, and the file is 3x smaller and 2x faster to write), else float32 (so a
  noiseless subject keeps its exact DKI signal).
"""

from __future__ import annotations

import json
import logging
import math
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from scipy.ndimage import gaussian_filter, map_coordinates

from dmriscope.cohort import microstructure as ms
from dmriscope.cohort import partial_volume as pv
from dmriscope.cohort import phantom as ph
from dmriscope.cohort.gradients import load_hcp_scheme, write_fsl_gradients
from dmriscope.cohort.participant_row import AGE_BIN_EDGES, AGE_BINS, read_participant
from dmriscope.config import METRICS
from dmriscope.io import InputError, atomic_path, load_nifti, save_nifti

log = logging.getLogger(__name__)

REFERENCE_AGE = 22.0  # years: age effects are per decade above this
F_RANGE = (0.05, 0.9)  # intra-axonal fractions are clipped to this range
TEXTURE_SMOOTHNESS_MM = 8.0
INT16_MIN_SIGMA = 5.0  # DWI is written as rounded int16 when the noise sigma is at least this, else float32


def subject_rng(seed: int, subject: str, stream: str) -> np.random.Generator:
    """An independent generator per (cohort seed, subject, purpose); stable across runs and machines."""
    return np.random.default_rng(np.random.SeedSequence([seed, zlib.crc32(f"{subject}/{stream}".encode())]))


def region_fractions(sex: str, age: float, synthetic: dict, rng: np.random.Generator) -> np.ndarray:
    """One subject's intra-axonal fraction per atlas label, (49,) (entry 0: unlabelled white matter)."""
    sd = synthetic["subject_sd"]
    f = ph.region_f_means() + rng.normal(0.0, sd, ph.N_REGIONS + 1)
    for effect in synthetic["sex_effects"]:
        f[effect["region"]] += (0.5 if sex == "M" else -0.5) * effect["size"] * sd
    for effect in synthetic["age_effects"]:
        f[effect["region"]] += effect["size"] * sd * (age - REFERENCE_AGE) / 10.0
    return np.clip(f, *F_RANGE)


def brain_scale(sex: str, synthetic: dict, rng: np.random.Generator) -> float:
    """Linear brain size relative to the template: males/females differ by male_scale on average."""
    half = math.sqrt(synthetic["male_scale"])
    return float((half if sex == "M" else 1.0 / half) * math.exp(rng.normal(0.0, synthetic["scale_sd"])))


def native_voxel_mm(synthetic: dict) -> float:
    """The native (acquisition) voxel size: `synthetic.native_voxel_mm`, or the template's when that is null."""
    return float(synthetic.get("native_voxel_mm") or synthetic["voxel_mm"])


def native_shape(synthetic: dict) -> tuple[int, int, int]:
    """Native grid of `native_voxel_mm` voxels: the template's field of view, grown until it holds a brain 3 SD
    above the male mean size."""
    voxel = native_voxel_mm(synthetic)
    shape = np.round(np.asarray(synthetic["template_shape"]) * synthetic["voxel_mm"] / voxel).astype(int)
    largest = max(synthetic["male_scale"], 1.0 / synthetic["male_scale"]) ** 0.5 * math.exp(3 * synthetic["scale_sd"])
    needed = ph.BRAIN_SEMI_AXES_MM * largest + 2.5 * synthetic["deformation_mm"]
    pad = np.ceil(np.maximum(needed - voxel * shape / 2, 0) / voxel).astype(int)
    return tuple(int(n) for n in shape + 2 * pad)


def displacement_field(
    region: np.ndarray, voxel_mm: float, rms_mm: float, smoothness_mm: float, rng: np.random.Generator
) -> np.ndarray:
    """Smooth random displacements (X, Y, Z, 3) in mm on the grid of the bool `region` (X, Y, Z), scaled so that
    the RMS vector length over `region` (the brain) is `rms_mm`; Gaussian smoothing sigma `smoothness_mm`."""
    noise = rng.standard_normal((3, *region.shape))
    field = np.stack([gaussian_filter(c, smoothness_mm / voxel_mm, mode="reflect") for c in noise], axis=-1)
    rms = np.sqrt((field[region] ** 2).sum(-1).mean()) if region.any() else 0.0
    return (field * (rms_mm / rms if rms > 0 else 0.0)).astype(np.float32)


def pull_back(
    native_affine: np.ndarray, shape: tuple[int, int, int], scale: float, displacement: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Template world points x = y / scale + u(y) of every native voxel (X, Y, Z, 3) and the map's Jacobian
    dx/dy (X, Y, Z, 3, 3)."""
    points = ph.grid_points(shape, native_affine) / scale + displacement
    voxel = native_affine[0, 0]
    grads = np.stack([np.stack(np.gradient(displacement[..., i], voxel), axis=-1) for i in range(3)], axis=-2)
    return points, grads + np.eye(3) / scale


def sample(volume: np.ndarray, template_affine: np.ndarray, points: np.ndarray, order: int) -> np.ndarray:
    """Values of a template-grid volume at world points (..., 3): order 0 nearest, 1 linear; 0 outside the grid."""
    inverse = np.linalg.inv(template_affine)
    coords = points @ inverse[:3, :3].T + inverse[:3, 3]
    return map_coordinates(volume, np.moveaxis(coords, -1, 0), order=order, mode="constant", cval=0)


def add_rician_noise(dwi: np.ndarray, sigma: float, rng: np.random.Generator, chunk: int = 24) -> None:
    """In place: |S + sigma (n1 + i n2)| for every voxel and volume of a float32 (X, Y, Z, V) array."""
    for start in range(0, dwi.shape[-1], chunk):
        block = dwi[..., start : start + chunk]
        real = block + sigma * rng.standard_normal(block.shape, dtype=np.float32)
        imag = sigma * rng.standard_normal(block.shape, dtype=np.float32)
        dwi[..., start : start + chunk] = np.sqrt(real * real + imag * imag)


def wm_fractions(labels: np.ndarray, texture: np.ndarray, f_region: np.ndarray, texture_sd: float) -> np.ndarray:
    """Per-voxel intra-axonal fraction (N,): the region's f plus texture_sd x the texture field, clipped."""
    return np.clip(f_region[labels] + texture_sd * texture, *F_RANGE)


def transported_directions(
    labels: np.ndarray, tissue: np.ndarray, points: np.ndarray, jacobian: np.ndarray
) -> np.ndarray:
    """Unit fibre directions (N, 3) at template points (N, 3), carried into native space by the inverse of the
    native->template Jacobians dx/dy (N, 3, 3)."""
    directions = np.linalg.solve(jacobian, ph.fibre_directions(labels, tissue, points)[..., None])[..., 0]
    return directions / np.linalg.norm(directions, axis=1, keepdims=True)


def point_sampled(
    template: ph.Phantom, texture: np.ndarray, points: np.ndarray, jacobian: np.ndarray, f_region: np.ndarray,
    texture_sd: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:  # fmt: skip
    """Brain mask (X, Y, Z) and D, W, S0 of its N voxels, each read at its centre (template points (X, Y, Z, 3),
    Jacobians (X, Y, Z, 3, 3)): labels and tissue nearest-neighbour, the texture linearly."""
    brain = sample(template.tissue, template.affine, points, order=0) > 0
    tissue = sample(template.tissue, template.affine, points[brain], order=0)
    labels = sample(template.atlas, template.affine, points[brain], order=0)
    f = wm_fractions(labels, sample(texture, template.affine, points[brain], order=1), f_region, texture_sd)
    directions = transported_directions(labels, tissue, points[brain], jacobian[brain])
    return brain, *ms.voxel_tensors(tissue, f, directions)


def integrated(
    template: ph.Phantom, texture: np.ndarray, points: np.ndarray, jacobian: np.ndarray, f_region: np.ndarray,
    texture_sd: float, offsets: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:  # fmt: skip
    """As `point_sampled`, but each voxel the partial-volume mixture of its sub-points at `offsets` (S, 3; native
    mm; `dmriscope.cohort.partial_volume`): brain where at least half of them are."""
    subs = pv.sub_points(points.reshape(-1, 3), jacobian.reshape(-1, 3, 3), offsets)
    tissue = sample(template.tissue, template.affine, subs, order=0)
    brain_flat = (tissue > 0).mean(axis=1) >= 0.5
    brain = brain_flat.reshape(points.shape[:3])
    subs, tissue = subs[brain_flat], tissue[brain_flat]
    labels = sample(template.atlas, template.affine, subs, order=0)
    f = wm_fractions(labels, sample(texture, template.affine, subs, order=1), f_region, texture_sd)
    per_point = np.repeat(jacobian[brain], len(offsets), axis=0)
    directions = transported_directions(labels.ravel(), tissue.ravel(), subs.reshape(-1, 3), per_point)
    return brain, *pv.voxel_mixture(tissue, f, directions.reshape(*tissue.shape, 3))


def template_fa(phantom: ph.Phantom, texture: np.ndarray, texture_sd: float) -> np.ndarray:
    """FA of the population-mean microstructure (sexes' midpoint, age 22, no noise), float32 (X, Y, Z)."""
    brain = phantom.tissue > 0
    labels = phantom.atlas[brain]
    f = wm_fractions(labels, texture[brain], ph.region_f_means(), texture_sd)
    points = ph.grid_points(phantom.tissue.shape, phantom.affine)[brain]
    directions = ph.fibre_directions(labels, phantom.tissue[brain], points)
    truth = ms.scalar_maps(*ms.voxel_tensors(phantom.tissue[brain], f, directions)[:2], 0.0, 3.0)
    fa = np.zeros(phantom.tissue.shape, dtype=np.float32)
    fa[brain] = truth["FA"]
    return fa


def subject_age(row: dict) -> float:
    """Age in years, or the middle of the age bin when only the bin is known."""
    if row["age"] is not None:
        return float(row["age"])
    low, high = AGE_BIN_EDGES[AGE_BINS.index(row["age_bin"])]
    return (low + high) / 2.0


def load_template(atlas: str, tissue: str, texture: str, synthetic: dict) -> tuple[ph.Phantom, np.ndarray]:
    """The template phantom written by `prepare_template`; InputError if it does not match the config."""
    labels, affine = load_nifti(atlas, ndim=3, dtype=np.int16)
    codes, _ = load_nifti(tissue, ndim=3, dtype=np.int8)
    field, _ = load_nifti(texture, ndim=3)
    expected = tuple(synthetic["template_shape"])
    for path, volume in ((atlas, labels), (tissue, codes), (texture, field)):
        if volume.shape != expected:
            raise InputError(f"{path}: shape {volume.shape} differs from synthetic.template_shape {expected}")
    return ph.Phantom(tissue=codes, atlas=labels, affine=affine), field


def subject_anatomy(
    subject: str, sex: str, age: float, template: ph.Phantom, texture: np.ndarray, synthetic: dict, seed: int,
    dki_cfg: dict,
) -> dict:  # fmt: skip
    """One subject's native-space phantom and truth (no signal).

    Returns a dict: affine (4, 4); mask (X, Y, Z) bool brain; labels (X, Y, Z) int16 native atlas; truth
    {FA, MD (mm^2/s), MK} float32 (X, Y, Z); D (N, 3, 3), W (N, 15), s0 (N,) of the N brain voxels; params.
    """
    scale = brain_scale(sex, synthetic, subject_rng(seed, subject, "scale"))
    f_region = region_fractions(sex, age, synthetic, subject_rng(seed, subject, "microstructure"))
    shape = native_shape(synthetic)
    voxel = native_voxel_mm(synthetic)
    affine = ph.template_affine(shape, voxel)
    brain_ellipsoid = ph.surface_depth(ph.grid_points(shape, affine) / scale) >= 0
    u = displacement_field(
        brain_ellipsoid, voxel, synthetic["deformation_mm"], synthetic["deformation_smoothness_mm"],
        subject_rng(seed, subject, "deformation"),
    )  # fmt: skip
    points, jacobian = pull_back(affine, shape, scale, u)
    samples = synthetic.get("partial_volume_samples", 1)
    if samples == 1:
        brain, D, W, s0 = point_sampled(template, texture, points, jacobian, f_region, synthetic["texture_sd"])
    else:
        offsets = pv.subvoxel_offsets(samples, voxel)
        brain, D, W, s0 = integrated(template, texture, points, jacobian, f_region, synthetic["texture_sd"], offsets)
    values = ms.scalar_maps(D, W, dki_cfg["min_kurtosis"], dki_cfg["max_kurtosis"])
    labels = np.zeros(shape, dtype=np.int16)
    labels[brain] = sample(template.atlas, template.affine, points[brain], order=0)
    truth = {metric: np.zeros(shape, dtype=np.float32) for metric in METRICS}
    for metric in METRICS:
        truth[metric][brain] = values[metric]
    if brain[[0, -1]].any() or brain[:, [0, -1]].any() or brain[:, :, [0, -1]].any():
        log.warning("sub-%s: the brain touches the native grid's edge (scale %.3f)", subject, scale)
    params = {
        "subject": subject, "sex": sex, "age": age, "scale": scale, "seed": seed, "native_shape": list(shape),
        "deformation_rms_mm": float(np.sqrt((u[brain] ** 2).sum(-1).mean())),
        "min_jacobian_det": float(np.linalg.det(jacobian[brain]).min()), "brain_voxels": int(brain.sum()),
        "f": {str(i): float(v) for i, v in enumerate(f_region) if i > 0},
    }  # fmt: skip
    return {"affine": affine, "mask": brain, "labels": labels, "truth": truth, "D": D, "W": W, "s0": s0,
            "params": params}  # fmt: skip


def subject_dwi(anatomy: dict, synthetic: dict, seed: int, bvals: np.ndarray, bvecs: np.ndarray) -> np.ndarray:
    """The subject's DWI, float32 (X, Y, Z, volumes): the DKI signal of its tensors plus Rician noise.

    Noise sigma = S0_WM / snr (0 when ``noiseless``), recorded in the anatomy's params; background voxels hold
    pure (Rayleigh) noise.
    """
    mask = anatomy["mask"]
    dwi = np.zeros((*mask.shape, len(bvals)), dtype=np.float32, order="F")  # NIfTI order: volumes contiguous
    dwi[mask] = ms.dki_signal(anatomy["D"], anatomy["W"], anatomy["s0"], bvals, bvecs)
    sigma = 0.0 if synthetic["noiseless"] else ms.S0_WM / synthetic["snr"]
    if sigma > 0:
        add_rician_noise(dwi, sigma, subject_rng(seed, anatomy["params"]["subject"], "noise"))
    anatomy["params"].update(sigma=sigma, s0_wm=ms.S0_WM, snr=None if sigma == 0 else synthetic["snr"])
    return dwi


def synthesize_subject(
    subject: str, participants: str, atlas: str, tissue: str, texture: str, out_dwi: str, out_bval: str,
    out_bvec: str, out_mask: str, out_truth: Sequence[str], out_params: str, synthetic: dict, seed: int, dki: dict,
) -> None:  # fmt: skip
    """Simulate one subject and write HCP-style raw data plus ground truth (out_truth: FA, MD, MK paths)."""
    row = read_participant(participants, subject)
    template, field = load_template(atlas, tissue, texture, synthetic)
    anatomy = subject_anatomy(subject, row["sex"], subject_age(row), template, field, synthetic, seed, dki)
    anatomy["params"]["age_bin"] = row["age_bin"]
    bvals, bvecs = load_hcp_scheme()
    dwi = subject_dwi(anatomy, synthetic, seed, bvals, bvecs)
    if anatomy["params"]["sigma"] >= INT16_MIN_SIGMA:  # rounding adds variance 1/12, < 0.4% of sigma^2
        np.clip(np.rint(dwi, out=dwi), 0, np.iinfo(np.int16).max, out=dwi)
        anatomy["params"]["dwi_dtype"] = "int16"
    else:
        anatomy["params"]["dwi_dtype"] = "float32"
    # gzip level 0: the DWI is a temp() file that only fit_dki reads; level 1 cost 0.6 s of a 1.5 s job
    save_nifti(dwi, anatomy["affine"], out_dwi, dtype=anatomy["params"]["dwi_dtype"], compresslevel=0)
    del dwi
    save_nifti(anatomy["mask"], anatomy["affine"], out_mask, dtype=np.uint8)
    for metric, path in zip(METRICS, out_truth):
        save_nifti(anatomy["truth"][metric], anatomy["affine"], path)
    with atomic_path(out_bval) as tmp_bval, atomic_path(out_bvec) as tmp_bvec:
        write_fsl_gradients(bvals, bvecs, tmp_bval, tmp_bvec)
    with atomic_path(out_params) as tmp:
        Path(tmp).write_text(json.dumps(anatomy["params"], indent=1))
    p = anatomy["params"]
    log.info(
        "sub-%s: %s, age %.0f, scale %.3f, deformation RMS %.1f mm, %d brain voxels, noise sigma %.1f",
        *(subject, p["sex"], p["age"], p["scale"], p["deformation_rms_mm"], p["brain_voxels"], p["sigma"]),
    )
