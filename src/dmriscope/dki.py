"""Diffusion kurtosis imaging: FA, MD (mm^2/s) and MK of every masked voxel, fitted in batches over voxels.

The model, the estimator and the metrics are dipy's (1.12): `dipy.reconst.dki.design_matrix`, its ordinary and
weighted linear least squares (`ls_fit_dki`: OLS on log-signals; WLS weights = OLS-predicted signal, squared), the
eigenvalue floor `1e-6 / -min(design)` of `DiffusionKurtosisModel`, signals clipped to `MIN_POSITIVE_SIGNAL`,
`decompose_tensor`, `fractional_anisotropy`, `mean_diffusivity` and analytic MK. Done here by hand: the solve (dipy
solves one voxel at a time, ``pinv`` of a 288 x 22 matrix per voxel, a few hundred voxels/s; here a chunk of voxels
is solved at once through the weighted normal equations on a column-scaled design: one matrix product for all
voxels, then batched 22 x 22 solves) and MK
(`dmriscope.kurtosis`, dipy's `mean_kurtosis` vectorised, ~10x faster than its per-voxel loop). tests/test_dki.py
checks both against dipy. The design matrix and the tensor functions come
through `dmriscope.tensor` (dipy's own design function, bit-identical copies of the others) and the gradient files
are read with numpy (`dmriscope.shells`), so a fit_dki job does not spend 0.7 s importing `dipy.reconst.dki`.

Memory: the 4D image is streamed through nibabel's ``dataobj`` in blocks of whole volumes (file order, so a .nii.gz is
decompressed once, front to back; z-slabs would decompress the whole file once per slab). Only the masked voxels of
the kept volumes are held, as float32: ``n_mask x n_volumes x 4`` bytes (HCP: ~1e6 x 288 x 4 = 1.1 GB), plus one read
block (`READ_BLOCK_BYTES`) and one fit chunk's work arrays, reused from chunk to chunk (`_Buffers`, ~``chunk_voxels x
(3 x n_volumes + 737) x 8`` bytes plus small temporaries; 2,000 voxels: ~25 MB).
"""

from __future__ import annotations

import importlib.metadata
import json
import logging
import os
import time
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np

from dmriscope.config import METRICS
from dmriscope.io import InputError, atomic_path, load_mask, progress, save_nifti
from dmriscope.kurtosis import mean_kurtosis_batched
from dmriscope.shells import SHELL_TOLERANCE, check_shells, read_gradients, shell_counts
from dmriscope.tensor import (
    MIN_POSITIVE_SIGNAL,
    decompose_tensor,
    dki_design,
    fractional_anisotropy,
    from_lower_triangular,
    mean_diffusivity,
)

log = logging.getLogger(__name__)
PathLike = str | os.PathLike

# a single shell leaves the column-scaled design singular up to the rounding of the b-vectors (~1e-7 relative);
# HCP's three shells give 0.05, 15 directions on each of two shells 0.03
MIN_RELATIVE_SINGULAR = 1e-4
READ_BLOCK_BYTES = 256 * 2**20  # bytes of the 4D image read at once (whole volumes)
METHODS = ("WLS", "OLS")
_UPPER = np.triu_indices(22)


def _symmetric_index() -> np.ndarray:
    """(484,): for each (i, j) of a 22 x 22 matrix (C order), the column of `DkiDesign.products` holding it."""
    index = np.zeros((22, 22), dtype=np.intp)
    index[_UPPER] = np.arange(len(_UPPER[0]))
    index.T[_UPPER] = index[_UPPER]
    return index.ravel()


_SYMMETRIC = _symmetric_index()
# what nibabel raises on broken files: a truncated .gz (EOFError, zlib.error, BadGzipFile), a short .nii
# (ValueError "Expected ... bytes"), a bad header (ImageFileError, a ValueError subclass)
_READ_ERRORS = (OSError, EOFError, ValueError, zlib.error)


@dataclass(frozen=True)
class DkiDesign:
    """dipy's DKI design for one gradient scheme of g volumes, with what the batched solve needs.

    matrix: (g, 22) `dipy.reconst.dki.design_matrix` (b in s/mm^2; 6 DT, 15 KT x MD^2, -log S0 columns).
    pinv: (22, g) its pseudo-inverse (dipy's OLS solution operator).
    scale: (22,) 1 / column norms, so the weighted normal equations are well conditioned.
    products: (g, 253) products of scaled columns i <= j; weights (n, g) @ products = the n normal matrices.
    min_diffusivity: eigenvalue floor in mm^2/s, 1e-6 / -min(matrix), as in `DiffusionKurtosisModel`.
    """

    matrix: np.ndarray
    pinv: np.ndarray
    scale: np.ndarray
    products: np.ndarray
    min_diffusivity: float


def make_design(bvals: np.ndarray, bvecs: np.ndarray) -> DkiDesign:
    """The DKI design for b-values (g,) in s/mm^2 and unit b-vectors (g, 3); ValueError if it cannot determine DKI."""
    matrix = dki_design(bvals, bvecs)
    scale = 1.0 / np.linalg.norm(matrix, axis=0)
    scaled = matrix * scale
    singular = np.linalg.svd(scaled, compute_uv=False)
    if singular.min() < MIN_RELATIVE_SINGULAR * singular.max():
        raise ValueError(
            f"the scheme cannot determine the 22 DKI parameters (relative smallest singular value "
            f"{singular.min() / singular.max():.1e}); DKI needs >= 2 non-zero shells with >= 15 directions each"
        )
    products = scaled[:, _UPPER[0]] * scaled[:, _UPPER[1]]
    return DkiDesign(matrix, np.linalg.pinv(matrix), scale, products, 1e-6 / -matrix.min())


def _solve_stacked(normal: np.ndarray, rhs: np.ndarray) -> np.ndarray:
    """Solve n systems normal (n, k, k) @ x = rhs (n, k); singular ones through the pseudo-inverse."""
    try:
        return np.linalg.solve(normal, rhs[..., None])[..., 0]
    except np.linalg.LinAlgError:
        log.warning("singular weighted system in a chunk of %d voxels: solving it by pseudo-inverse", len(rhs))
        return np.einsum("nij,nj->ni", np.linalg.pinv(normal), rhs)


@dataclass
class _Buffers:
    """Work arrays for chunks of up to `voxels` voxels, reused from chunk to chunk: allocated anew, a chunk's
    ~25 MB of temporaries cost ~2 us a voxel in page faults (measured), as much as a third of the fit."""

    log_signal: np.ndarray  # (voxels, g)
    weights2: np.ndarray  # (voxels, g)
    product: np.ndarray  # (voxels, g)
    moments: np.ndarray  # (voxels, 253)
    normal: np.ndarray  # (voxels, 484)

    @classmethod
    def allocate(cls, voxels: int, volumes: int) -> _Buffers:
        shapes = [(voxels, volumes)] * 3 + [(voxels, len(_UPPER[0])), (voxels, len(_SYMMETRIC))]
        return cls(*(np.empty(shape) for shape in shapes))


def fit_coefficients(
    signals: np.ndarray, design: DkiDesign, method: str = "WLS", buffers: _Buffers | None = None
) -> np.ndarray:
    """dipy's linear DKI solution (6 DT elements, 15 KT x MD^2 elements, -log S0) for signals (n, g) -> (n, 22).

    Signals are clipped to `MIN_POSITIVE_SIGNAL` first, as `DiffusionKurtosisModel.fit` does. WLS minimises
    sum_g w_g^2 (A x - log S)_g^2 with w = exp(A x_OLS), the OLS-predicted signal (dipy's `ls_fit_dki`). The weights
    are rescaled per voxel in the log domain (max 1), which leaves the solution unchanged and avoids overflow.
    `buffers` (from `_Buffers.allocate`) are the work arrays to use; by default new ones.
    """
    if method not in METHODS:
        raise ValueError(f"unknown DKI fit method {method!r}; expected one of {METHODS}")
    n = len(signals)
    work = buffers or _Buffers.allocate(n, design.matrix.shape[0])
    log_signal = np.maximum(signals, MIN_POSITIVE_SIGNAL, out=work.log_signal[:n], dtype=np.float64)
    np.log(log_signal, out=log_signal)
    ols = log_signal @ design.pinv.T
    if method == "OLS":
        return ols
    weights2 = np.matmul(ols, design.matrix.T, out=work.weights2[:n])
    weights2 *= 2.0
    weights2 -= weights2.max(axis=1, keepdims=True)
    np.exp(weights2, out=weights2)
    moments = np.matmul(weights2, design.products, out=work.moments[:n])
    normal = np.take(moments, _SYMMETRIC, axis=1, out=work.normal[:n]).reshape(-1, 22, 22)
    rhs = np.multiply(weights2, log_signal, out=work.product[:n]) @ (design.matrix * design.scale)
    return _solve_stacked(normal, rhs) * design.scale


def coefficients_to_params(coefficients: np.ndarray, min_diffusivity: float) -> np.ndarray:
    """Batched `dipy.reconst.dki.params_to_dki_params` without S0: (n, 22) -> (n, 27).

    Columns: 3 eigenvalues (descending, floored at `min_diffusivity`, mm^2/s), the 3 x 3 eigenvector matrix row by
    row (eigenvectors are its columns), 15 kurtosis tensor elements (coefficients / MD^2).
    """
    evals, evecs = decompose_tensor(from_lower_triangular(coefficients[:, :6]), min_diffusivity=min_diffusivity)
    md_square = evals.mean(axis=1, keepdims=True) ** 2
    safe = np.where(md_square > 0, md_square, 1.0)
    kurtosis = np.where(md_square > 0, coefficients[:, 6:21] / safe, 0.0)
    return np.concatenate([evals, evecs.reshape(len(evals), 9), kurtosis], axis=1)


def params_to_metrics(params: np.ndarray, min_kurtosis: float, max_kurtosis: float) -> dict[str, np.ndarray]:
    """FA, MD (mm^2/s) and MK (clipped to [min_kurtosis, max_kurtosis]) from dipy DKI params (n, 27); each (n,).

    MK is `dipy.reconst.dki.mean_kurtosis` (analytic), computed by its vectorised twin `mean_kurtosis_batched`.
    """
    evals = params[:, :3]
    return {
        "FA": fractional_anisotropy(evals),
        "MD": mean_diffusivity(evals),
        "MK": mean_kurtosis_batched(params, min_kurtosis, max_kurtosis),
    }


def fit_signals(
    signals: np.ndarray,
    design: DkiDesign,
    *,
    method: str = "WLS",
    min_kurtosis: float = 0.0,
    max_kurtosis: float = 3.0,
    chunk_voxels: int = 2000,
) -> dict[str, np.ndarray]:
    """Fit DKI to signals (n, g) chunk by chunk; return FA, MD (mm^2/s), MK, each (n,) float64."""
    n_voxels = len(signals)
    out = {metric: np.zeros(n_voxels) for metric in METRICS}
    starts = range(0, n_voxels, chunk_voxels)
    buffers = _Buffers.allocate(min(chunk_voxels, n_voxels), design.matrix.shape[0])
    for start in progress(starts, desc="DKI fit (chunks)", total=len(starts)):
        stop = min(start + chunk_voxels, n_voxels)
        coefficients = fit_coefficients(signals[start:stop], design, method, buffers)
        params = coefficients_to_params(coefficients, design.min_diffusivity)
        for metric, values in params_to_metrics(params, min_kurtosis, max_kurtosis).items():
            out[metric][start:stop] = values
    return out


def open_dwi(dwi: str | os.PathLike) -> nib.Nifti1Image:
    """Open a 4D NIfTI lazily (header only), the file handle kept open so blocks can be streamed in order."""
    if not Path(dwi).exists():
        raise InputError(f"{dwi}: file not found")
    try:
        img = nib.load(dwi, mmap=False, keep_file_open=True)
    except _READ_ERRORS as exc:
        raise InputError(f"{dwi}: cannot read NIfTI ({type(exc).__name__}: {exc})") from None
    if len(img.shape) != 4:
        raise InputError(f"{dwi}: expected a 4D image, got shape {img.shape}")
    return img


def read_masked_signals(img: nib.Nifti1Image, dwi: str | os.PathLike, mask: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """Signals (n_mask, n_keep) float32 of the masked voxels (C order of `mask`) in the kept volumes.

    Every volume is read, in blocks of about `READ_BLOCK_BYTES`, so a truncated file or a NaN/Inf anywhere in the
    image is an InputError naming `dwi`; nothing larger than one block of the image is in memory at once.
    """
    n_volumes = img.shape[3]
    block = max(1, READ_BLOCK_BYTES // (int(np.prod(img.shape[:3])) * 4))
    out = np.empty((int(mask.sum()), int(keep.sum())), dtype=np.float32)
    column = np.cumsum(keep) - 1  # output column of each kept volume
    starts = range(0, n_volumes, block)
    for start in progress(starts, desc="reading DWI (volume blocks)", total=len(starts)):
        stop = min(start + block, n_volumes)
        try:
            data = np.asarray(img.dataobj[..., start:stop], dtype=np.float32)
        except _READ_ERRORS as exc:
            raise InputError(f"{dwi}: cannot read volumes {start}-{stop - 1} ({type(exc).__name__}: {exc})") from None
        finite = np.isfinite(data)
        if not finite.all():
            raise InputError(f"{dwi}: {int(finite.size - finite.sum())} NaN/Inf values in volumes {start}-{stop - 1}")
        kept = keep[start:stop]
        if kept.any():
            out[:, column[start:stop][kept]] = data[mask][:, kept]
    return out


@dataclass
class _Inputs:
    """One subject's checked inputs: the lazily opened DWI, its gradients, the kept volumes, design and mask."""

    img: nib.Nifti1Image
    bvals: np.ndarray
    keep: np.ndarray
    design: DkiDesign
    brain: np.ndarray
    affine_matches: bool


def _open_inputs(dwi: PathLike, bval: PathLike, bvec: PathLike, mask: PathLike, shells: Sequence[float]) -> _Inputs:
    """Open and check a subject's DWI, gradients and mask against each other and the configured shells."""
    img = open_dwi(dwi)
    bvals, bvecs = read_gradients(bval, bvec, img.shape[3])
    brain, mask_affine = load_mask(mask)
    if brain.shape != img.shape[:3]:
        raise InputError(f"{mask}: mask shape {brain.shape} does not match the DWI grid {img.shape[:3]} of {dwi}")
    affine_matches = bool(np.allclose(mask_affine, img.affine, atol=1e-3))
    if not affine_matches:
        log.warning("%s: affine differs from that of %s; the mask is applied voxel for voxel", mask, dwi)
    keep = check_shells(bvals, shells, SHELL_TOLERANCE, bval)
    if not keep.all():
        log.warning("%s: %d of %d volumes lie off dki.bvals and are not fitted", bval, (~keep).sum(), len(keep))
    try:
        design = make_design(bvals[keep], bvecs[keep])
    except ValueError as exc:
        raise InputError(f"{bval}: {int(keep.sum())} volumes within {SHELL_TOLERANCE:g} of dki.bvals: {exc}") from None
    return _Inputs(img, bvals, keep, design, brain, affine_matches)


def _harmonise(
    signals: np.ndarray, inputs: _Inputs, cfg: Mapping[str, Any], template_fa: PathLike | None, subject: str
) -> dict[str, Any] | None:
    """`dmriscope.harmonise` on the masked signals, in place, when `dki.harmonise.psf_mm` is set."""
    if cfg.get("psf_mm") is None:
        return None
    from dmriscope import harmonise

    if template_fa is None:
        raise ValueError("dki.harmonise.psf_mm is set but no template FA was given to fit_dki_files")
    zooms = tuple(float(z) for z in inputs.img.header.get_zooms()[:3])
    volume_ml = float(inputs.brain.sum()) * float(np.prod(zooms)) / 1e3
    scale = (volume_ml / harmonise.template_volume_ml(str(template_fa))) ** (1 / 3)
    log.info("%s: harmonising for brain size (volume %.0f ml, scale %.3f)", subject, volume_ml, scale)
    return harmonise.harmonise_signals(signals, inputs.brain, zooms, inputs.bvals[inputs.keep], scale, cfg, subject)


def _write_maps(
    metrics: Mapping[str, np.ndarray], dead: np.ndarray, inputs: _Inputs, out_maps: Mapping, dwi: PathLike
) -> None:
    """Each metric as a float32 NIfTI on the DWI grid: 0 outside the mask, at dead voxels and where not finite."""
    for metric, path in out_maps.items():
        values = metrics[metric]
        bad = ~np.isfinite(values)
        if bad.any():
            log.warning("%s: %d non-finite %s values set to 0", dwi, bad.sum(), metric)
        bad |= dead
        volume = np.zeros(inputs.img.shape[:3], dtype=np.float32)
        volume[inputs.brain] = np.where(bad, 0.0, values)
        save_nifti(volume, inputs.img.affine, path)


def _settings(dki_cfg: Mapping[str, Any], inputs: _Inputs, dead: np.ndarray, seconds: tuple[float, float]) -> dict:
    """fit.json: what was fitted, how, and how long it took (fit, whole job)."""
    keep, shells = inputs.keep, dki_cfg["bvals"]
    return {
        "fit_method": dki_cfg["fit_method"],
        "shells": [float(b) for b in shells],
        "shell_tolerance": SHELL_TOLERANCE,
        "n_volumes": int(keep.sum()),
        "n_volumes_in_file": len(keep),
        "volumes_per_shell": {f"{b:g}": int(n) for b, n in zip(shells, shell_counts(inputs.bvals[keep], shells))},
        "min_kurtosis": float(dki_cfg["min_kurtosis"]),
        "max_kurtosis": float(dki_cfg["max_kurtosis"]),
        "min_signal": MIN_POSITIVE_SIGNAL,
        "min_diffusivity": inputs.design.min_diffusivity,
        "chunk_voxels": int(dki_cfg["chunk_voxels"]),
        "voxels_fitted": int(inputs.brain.sum()),
        "voxels_zero_signal": int(dead.sum()),
        "mask_affine_matches_dwi": inputs.affine_matches,
        "fit_seconds": round(seconds[0], 3),
        "seconds": round(seconds[1], 3),
        "dipy_version": importlib.metadata.version("dipy"),
        "md_units": "mm^2/s",
    }


def fit_dki_files(
    dwi: str | os.PathLike,
    bval: str | os.PathLike,
    bvec: str | os.PathLike,
    mask: str | os.PathLike,
    out_maps: Mapping[str, str | os.PathLike],
    settings_path: str | os.PathLike,
    dki_cfg: Mapping[str, Any],
    template_fa: str | os.PathLike | None = None,
    subject: str = "",
) -> dict[str, Any]:
    """Fit DKI to one subject's files; write each metric in `out_maps` (FA, MD in mm^2/s, MK) and fit.json.

    `dki_cfg` is the config's `dki` section (fit_method, bvals, min_kurtosis, max_kurtosis, chunk_voxels, harmonise).
    With `dki.harmonise.psf_mm` set, the signals are first harmonised for brain size against `template_fa`
    (`dmriscope.harmonise`; `subject` seeds its noise). Maps are float32 NIfTI on the DWI grid and affine, 0 outside
    the mask, written atomically. Returns the settings written.
    """
    unknown = set(out_maps) - set(METRICS)
    if unknown:
        raise ValueError(f"unknown DKI metrics {sorted(unknown)}; expected {METRICS}")
    started = time.perf_counter()
    inputs = _open_inputs(dwi, bval, bvec, mask, dki_cfg["bvals"])
    n_voxels, n_kept = int(inputs.brain.sum()), int(inputs.keep.sum())
    log.info("%s: %d of %d volumes kept, %d voxels; holding ~%.0f MB of signals", dwi, n_kept, len(inputs.keep),
             n_voxels, n_voxels * n_kept * 4 / 2**20)  # fmt: skip
    signals = read_masked_signals(inputs.img, dwi, inputs.brain, inputs.keep)
    harmonised = _harmonise(signals, inputs, dki_cfg.get("harmonise") or {}, template_fa, subject)
    dead = ~signals.any(axis=1)  # signal 0 in every volume: no tissue to fit, written as 0 like outside the mask
    if dead.any():
        log.warning("%s: %d brain-mask voxels have signal 0 in every volume; written as 0", dwi, dead.sum())
    fit_started = time.perf_counter()
    metrics = fit_signals(
        signals,
        inputs.design,
        method=dki_cfg["fit_method"],
        min_kurtosis=float(dki_cfg["min_kurtosis"]),
        max_kurtosis=float(dki_cfg["max_kurtosis"]),
        chunk_voxels=int(dki_cfg["chunk_voxels"]),
    )
    fit_seconds = time.perf_counter() - fit_started
    del signals
    _write_maps(metrics, dead, inputs, out_maps, dwi)
    settings = _settings(dki_cfg, inputs, dead, (fit_seconds, time.perf_counter() - started))
    if harmonised:
        settings["harmonise"] = harmonised
    with atomic_path(settings_path) as tmp:
        tmp.write_text(json.dumps(settings, indent=2) + "\n")
    log.info(
        "%s: fitted %d voxels in %.1f s (%.0f voxels/s)", dwi, n_voxels, fit_seconds, n_voxels / max(fit_seconds, 1e-9)
    )
    return settings
