"""dipy's diffusion-tensor arithmetic, without importing `dipy.reconst.dti` / `dipy.core.gradients` in every job.

Importing `dipy.reconst.dti` or `dipy.core.gradients` costs ~0.6 s per process (they pull in `dipy.data`,
`dipy.io`, scipy.optimize, boto3 through the fetchers); `fit_dki` and `synthesize_subject` run once per subject, so
that import was as long as the DKI fit itself (benchmarks/workflow_profile.py, README "Benchmarks"). The model stays
dipy's: the DKI design matrix is `dipy.reconst.utils.dki_design_matrix` itself (a module that imports only numpy),
fed the b-values and b-vectors exactly as `dipy.core.gradients.gradient_table` would hold them. The four tensor
functions below are copies of dipy 1.12's (`dipy.reconst.dti.decompose_tensor`, `fractional_anisotropy`,
`mean_diffusivity`, `from_lower_triangular`), same operations in the same order, so the results are bit-identical;
tests/test_tensor.py checks each against dipy with `np.array_equal`.
"""

from __future__ import annotations

import types

import numpy as np
from dipy.reconst.utils import dki_design_matrix

MIN_POSITIVE_SIGNAL = 0.0001  # dipy.reconst.dti.MIN_POSITIVE_SIGNAL
UNIT_ATOL = 1e-2  # dipy.core.gradients.gradient_table's default: |norm - 1| within this counts as a unit b-vector
_LT_INDICES = np.array([[0, 1, 3], [1, 2, 4], [3, 4, 5]])  # dipy.reconst.dti._lt_indices


def gradient_arrays(bvals: np.ndarray, bvecs: np.ndarray, atol: float = UNIT_ATOL) -> tuple[np.ndarray, np.ndarray]:
    """(bvals (g,), bvecs (g, 3)) as `gradient_table(bvals, bvecs=bvecs)` stores them (`gradient_table_from_bvals_
    bvecs`): NaN b-vector components set to 0, and a b-vector that is not unit within `atol` (a zero b0 vector)
    zeroed together with its b-value. The caller checks that diffusion-weighted volumes have unit b-vectors."""
    bvals = np.asarray(bvals, float)
    bvecs = np.asarray(bvecs, float)
    bvecs = np.where(np.isnan(bvecs), 0, bvecs)
    close_to_1 = abs(np.sqrt((bvecs * bvecs).sum(-1)) - 1) <= atol
    return bvals * close_to_1, np.where(close_to_1[:, None], bvecs, 0)


def dki_design(bvals: np.ndarray, bvecs: np.ndarray) -> np.ndarray:
    """`dipy.reconst.dki.design_matrix(gradient_table(bvals, bvecs=bvecs))`, (g, 22), b in s/mm^2."""
    b, g = gradient_arrays(bvals, bvecs)
    return dki_design_matrix(types.SimpleNamespace(bvals=b, bvecs=g))


def from_lower_triangular(D: np.ndarray) -> np.ndarray:
    """(..., >= 6) elements Dxx, Dxy, Dyy, Dxz, Dyz, Dzz -> (..., 3, 3) tensors (`dipy.reconst.dti`)."""
    return D[..., _LT_INDICES]


def decompose_tensor(tensor: np.ndarray, *, min_diffusivity: float = 0) -> tuple[np.ndarray, np.ndarray]:
    """Eigenvalues (..., 3), descending and clipped below at `min_diffusivity`, and eigenvectors (..., 3, 3) as
    columns, of symmetric tensors (..., 3, 3): `dipy.reconst.dti.decompose_tensor`."""
    eigenvals, eigenvecs = np.linalg.eigh(tensor)
    if eigenvals.ndim == 1:
        order = eigenvals.argsort()[::-1]
        eigenvecs = eigenvecs[:, order]
        eigenvals = eigenvals[order]
    else:
        shape = eigenvals.shape[:-1]
        eigenvals = eigenvals.reshape(-1, 3)
        eigenvecs = eigenvecs.reshape(-1, 3, 3)
        size = eigenvals.shape[0]
        order = eigenvals.argsort()[:, ::-1]
        xi, yi = np.ogrid[:size, :3, :3][:2]
        eigenvecs = eigenvecs[xi, yi, order[:, None, :]]
        xi = np.ogrid[:size, :3][0]
        eigenvals = eigenvals[xi, order]
        eigenvecs = eigenvecs.reshape(shape + (3, 3))
        eigenvals = eigenvals.reshape(shape + (3,))
    return eigenvals.clip(min=min_diffusivity), eigenvecs


def fractional_anisotropy(evals: np.ndarray) -> np.ndarray:
    """FA of eigenvalues (..., 3); 0 where all three are 0 (`dipy.reconst.dti.fractional_anisotropy`)."""
    evals = _rolled(evals)
    all_zero = (evals == 0).all(axis=0)
    ev1, ev2, ev3 = evals
    return np.sqrt(0.5 * ((ev1 - ev2) ** 2 + (ev2 - ev3) ** 2 + (ev3 - ev1) ** 2) / ((evals * evals).sum(0) + all_zero))


def mean_diffusivity(evals: np.ndarray) -> np.ndarray:
    """MD of eigenvalues (..., 3) (`dipy.reconst.dti.mean_diffusivity`)."""
    return _rolled(evals).mean(0)


def _rolled(evals: np.ndarray) -> np.ndarray:
    if evals.shape[-1] != 3:
        raise ValueError(f"Expecting 3 eigenvalues, got {evals.shape[-1]}")
    return np.rollaxis(evals, -1)
