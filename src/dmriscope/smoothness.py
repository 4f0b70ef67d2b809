"""Smoothness of the registered maps, per subject, and its equalisation (config key ``tensors.smooth_to_fwhm``).

Why: a larger brain spans more native voxels per template region, so its registered map keeps finer detail (and
finer-grained noise) than a smaller brain's. No regression of voxel values removes that - it is a difference in
spatial texture, not in means - and a CNN reads it (README, "Brain size"). The remedy is the one multi-site
neuroimaging uses for scanners of different resolution (AFNI's 3dBlurToFWHM): estimate each map's own smoothness
and blur every map, inside the brain, until all reach one common FWHM.

* Estimate (`estimate_fwhm`): the classic first-difference estimator of FSL ``smoothest`` / AFNI ``3dFWHMx``
  (Forman et al. 1995, Kiebel et al. 1999) on the subject's residual from the cohort mean map (anatomy shared by
  everyone drops out; what is left is the subject's own texture and noise). Along each axis, the lag-1
  correlation of a Gaussian-smoothed white-noise field is rho = exp(-1 / (4 s^2)) for smoothing SD s voxels, so
  FWHM = sqrt(8 ln 2) s = sqrt(-2 ln 2 / ln rho), rho = 1 - var(first difference) / (2 var(residual)) over voxel
  pairs inside the brain. The subject's FWHM is the geometric mean of the three axes.
* Equalise (`blur_to_fwhm`): one Gaussian blur inside the brain mask (normalised convolution, so the zeros outside
  the brain do not bleed in), its SD found by root-finding so that the blurred map's estimate meets the target
  (a sampled field is not exactly Gaussian, so FWHMs do not add in quadrature exactly - AFNI iterates for the same
  reason). A map already within `TOLERANCE` below the target, or above it, is left as it is.
* Target: a number (voxels of the model grid) or ``auto`` - the largest estimated FWHM of the cohort's maps, so
  every map is brought to the smoothest one's resolution. Estimate and target use no label; like the template,
  they see every subject's map (test subjects' included).
"""

from __future__ import annotations

import logging
import math

import numpy as np
import pandas as pd
from scipy.ndimage import gaussian_filter
from scipy.optimize import brentq

from dmriscope.io import InputError, progress

log = logging.getLogger(__name__)

FWHM_PER_SIGMA = math.sqrt(8.0 * math.log(2.0))
TOLERANCE = 0.02  # a map within 2% below the target counts as at the target
SIGMA_XTOL = 1e-3  # voxels: the kernel SD's precision
MAX_ITERATIONS = 50


def axis_fwhm(residual: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """FWHM (voxels) of ``residual`` along each axis, from first differences over pairs of voxels inside ``mask``;
    inf where the field does not change along an axis, nan where the mask has no such pair."""
    inside = residual[mask]
    variance = float(np.var(inside))
    out = np.full(residual.ndim, np.nan)
    if variance <= 0:
        return np.full(residual.ndim, np.inf)
    for axis in range(residual.ndim):
        n = mask.shape[axis]
        both = np.logical_and(np.take(mask, range(1, n), axis), np.take(mask, range(n - 1), axis))
        if not both.any():
            continue
        diff = np.diff(residual, axis=axis)[both]
        rho = 1.0 - float(np.mean(diff**2)) / (2.0 * variance)
        out[axis] = math.sqrt(-2.0 * math.log(2.0) / math.log(rho)) if 0 < rho < 1 else (np.inf if rho >= 1 else 0.0)
    return out


def estimate_fwhm(volume: np.ndarray, mean: np.ndarray, mask: np.ndarray) -> float:
    """One map's smoothness: the geometric mean over axes of `axis_fwhm` of (volume - mean), demeaned in ``mask``."""
    residual = np.asarray(volume, dtype=np.float64) - mean
    residual = np.where(mask, residual - residual[mask].mean(), 0.0)
    with np.errstate(divide="ignore"):  # an axis rougher than white noise has FWHM 0, and so has the mean
        return float(np.exp(np.mean(np.log(axis_fwhm(residual, mask)))))


def masked_blur(volume: np.ndarray, mask: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur of SD ``sigma`` voxels inside ``mask`` (normalised convolution); voxels outside are kept."""
    weight = gaussian_filter(mask.astype(np.float64), sigma, mode="constant")
    blurred = gaussian_filter(np.where(mask, volume, 0.0).astype(np.float64), sigma, mode="constant")
    out = np.array(volume, dtype=np.float64)
    out[mask] = blurred[mask] / weight[mask]
    return out


def blur_to_fwhm(
    volume: np.ndarray, mean: np.ndarray, mask: np.ndarray, target: float
) -> tuple[np.ndarray, float, float]:
    """Blur ``volume`` inside ``mask`` until its estimated FWHM (voxels, residual from ``mean``) reaches ``target``:
    (blurred volume float64, FWHM before, FWHM after). The kernel's SD is found by root-finding on the estimate of
    the blurred residual (Brent's method): on a sampled grid a narrow Gaussian widens a field less than
    FWHMs-add-in-quadrature says, so that formula only brackets the answer."""
    out = np.asarray(volume, dtype=np.float64)
    residual = np.where(mask, out - mean, 0.0)
    before = estimate_fwhm(residual, 0.0, mask)
    if not before < target * (1.0 - TOLERANCE):
        return out, before, before

    def excess(sigma: float) -> float:
        return estimate_fwhm(masked_blur(residual, mask, sigma), 0.0, mask) - target

    sigma = brentq(excess, 0.0, target / FWHM_PER_SIGMA + 1.0, xtol=SIGMA_XTOL, maxiter=MAX_ITERATIONS)
    after = estimate_fwhm(masked_blur(residual, mask, sigma), 0.0, mask)
    return masked_blur(out, mask, sigma), before, after


def resolve_target(target: float | str, fwhm: np.ndarray) -> float:
    """The common FWHM (voxels): ``target`` itself, or for ``auto`` the largest finite estimate."""
    if target == "auto":
        finite = fwhm[np.isfinite(fwhm)]
        if finite.size == 0:
            raise InputError("config key 'tensors.smooth_to_fwhm': auto, but no map has a finite smoothness")
        return float(finite.max())
    if isinstance(target, str) or not target > 0:
        raise InputError(f"config key 'tensors.smooth_to_fwhm': {target!r} is neither auto nor a positive number")
    return float(target)


def equalise_store(
    store: np.ndarray, subjects: list[str], mask: np.ndarray, target: float | str | None
) -> pd.DataFrame:
    """Estimate every row's FWHM of a (N, S, H, W) store in place of its registered maps; with a ``target``, blur
    each row to it. One row per subject: fwhm (before), fwhm_after, equal to fwhm when nothing was blurred."""
    mean = np.zeros(mask.shape)
    for row in range(len(store)):
        mean += store[row]
    mean /= max(len(store), 1)
    before = np.array([estimate_fwhm(store[row], mean, mask) for row in progress(range(len(store)), "smoothness")])
    after = before.copy()
    if target is not None:
        goal = resolve_target(target, before)
        for row in progress(range(len(store)), "blur to FWHM"):
            blurred, _, after[row] = blur_to_fwhm(store[row], mean, mask, goal)
            store[row] = blurred.astype(store.dtype)
        log.info("blurred to FWHM %.3f voxels: before %.3f-%.3f, after %.3f-%.3f", goal, before.min(),
                 before.max(), after.min(), after.max())  # fmt: skip
    return pd.DataFrame({"subject": subjects, "fwhm": before, "fwhm_after": after})
