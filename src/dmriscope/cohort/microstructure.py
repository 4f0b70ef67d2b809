"""Tissue microstructure -> diffusion and kurtosis tensors -> the DKI signal and the true FA, MD, MK.

Every voxel is a Gaussian mixture of up to three compartments (Neto Henriques et al. 2015, eq. 8):

* intra-axonal **stick**: diffusivity ``D_AXIAL`` along the fibre, 0 across it;
* extra-axonal **zeppelin**: ``D_AXIAL`` along the fibre, ``D_AXIAL * (1 - f)`` across it (tortuosity, f = the
  intra-axonal fraction of the non-isotropic signal);
* an **isotropic** compartment of diffusivity ``d_iso`` (restricted in grey matter, free water in CSF).

Fractions are ``[f (1 - f_iso), (1 - f) (1 - f_iso), f_iso]``. The mixture's diffusion tensor is ``D = sum_c f_c D_c``
and its kurtosis tensor ``W_ijkl = [sum_c f_c (D_c,ij D_c,kl + D_c,ik D_c,jl + D_c,il D_c,jk)
- (D_ij D_kl + D_ik D_jl + D_il D_jk)] / MD^2``. The signal is the DKI signal of (D, W), so a noiseless DKI fit
recovers the ground truth exactly. Diffusivities are in mm^2/s, b-values in s/mm^2. Everything is vectorised over
voxels (N); tensors are float64 (N, 3, 3), kurtosis tensors (N, 15) in dipy's element order.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from dmriscope import tensor
from dmriscope.kurtosis import mean_kurtosis_batched

log = logging.getLogger(__name__)

D_AXIAL = 1.8e-3  # mm^2/s, intra- and extra-axonal diffusivity along the fibre
D_FREE = 3.0e-3  # mm^2/s, free water at body temperature
BACKGROUND, CSF, GM, WM = 0, 1, 2, 3  # tissue codes of the phantom's tissue map
# dipy's order of the 15 independent kurtosis tensor elements (dipy.sims.voxel.multi_tensor_dki)
KT_INDICES = (
    (0, 0, 0, 0), (1, 1, 1, 1), (2, 2, 2, 2), (0, 0, 0, 1), (0, 0, 0, 2), (0, 1, 1, 1), (1, 1, 1, 2), (0, 2, 2, 2),
    (1, 2, 2, 2), (0, 0, 1, 1), (0, 0, 2, 2), (1, 1, 2, 2), (0, 0, 1, 2), (0, 1, 1, 2), (0, 1, 2, 2),
)  # fmt: skip


@dataclass(frozen=True)
class Tissue:
    """Fixed microstructure of a non-white-matter tissue (white matter's f comes from its atlas region).

    f: intra-neurite fraction of the anisotropic part; f_iso: isotropic fraction; d_iso: its diffusivity (mm^2/s);
    s0: b=0 signal (arbitrary units).
    """

    f: float
    f_iso: float
    d_iso: float
    s0: float


# grey matter: sparse radial neurites + a restricted isotropic pool (FA ~0.17, MD ~1.15e-3, MK ~0.83);
# CSF: free water (FA 0, MD 3e-3, MK 0)
TISSUES = {
    CSF: Tissue(f=0.0, f_iso=1.0, d_iso=D_FREE, s0=2000.0),
    GM: Tissue(f=0.15, f_iso=0.3, d_iso=0.4e-3, s0=1100.0),
}
S0_WM = 1000.0  # b=0 signal of white matter; the noise sigma is S0_WM / snr


def compartments(
    f: np.ndarray, f_iso: np.ndarray, d_iso: np.ndarray, directions: np.ndarray, d_axial: float = D_AXIAL
) -> tuple[np.ndarray, np.ndarray]:
    """Fractions (N, 3) and tensors (N, 3, 3, 3) of stick, zeppelin and isotropic compartments.

    f, f_iso, d_iso: (N,) intra-axonal fraction, isotropic fraction, isotropic diffusivity (mm^2/s);
    directions: (N, 3) unit fibre directions.
    """
    f, f_iso, d_iso = (np.asarray(a, dtype=np.float64) for a in (f, f_iso, d_iso))
    e = np.asarray(directions, dtype=np.float64)
    ee = e[:, :, None] * e[:, None, :]
    eye = np.eye(3)[None]
    d_perp = d_axial * (1.0 - f)
    tensors = np.stack(
        [
            d_axial * ee,
            d_perp[:, None, None] * eye + (d_axial - d_perp)[:, None, None] * ee,
            d_iso[:, None, None] * np.broadcast_to(eye, ee.shape),
        ],
        axis=1,
    )
    fractions = np.stack([f * (1.0 - f_iso), (1.0 - f) * (1.0 - f_iso), f_iso], axis=1)
    return fractions, tensors


def _pairings(a: np.ndarray, b: np.ndarray, i: int, j: int, k: int, l: int) -> np.ndarray:
    """a_ij b_kl + a_ik b_jl + a_il b_jk over leading axes (a, b: (..., 3, 3))."""
    return a[..., i, j] * b[..., k, l] + a[..., i, k] * b[..., j, l] + a[..., i, l] * b[..., j, k]


def mixture_tensors(fractions: np.ndarray, tensors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Diffusion tensor D (N, 3, 3) and kurtosis tensor W (N, 15; dipy order) of a Gaussian mixture.

    fractions: (N, K) summing to 1; tensors: (N, K, 3, 3) compartment diffusion tensors (mm^2/s).
    """
    fractions = np.asarray(fractions, dtype=np.float64)
    D = np.einsum("nk,nkij->nij", fractions, tensors)
    md = np.trace(D, axis1=1, axis2=2) / 3.0
    W = np.empty((len(D), len(KT_INDICES)))
    for n, (i, j, k, l) in enumerate(KT_INDICES):
        within = np.einsum("nk,nk->n", fractions, _pairings(tensors, tensors, i, j, k, l))
        W[:, n] = (within - _pairings(D, D, i, j, k, l)) / md**2
    return D, W


def lower_triangular(D: np.ndarray) -> np.ndarray:
    """(N, 3, 3) -> (N, 6) in dipy's order Dxx, Dxy, Dyy, Dxz, Dyz, Dzz."""
    return D[:, [0, 0, 1, 0, 1, 2], [0, 1, 1, 2, 2, 2]]


def dki_params(D: np.ndarray, W: np.ndarray) -> np.ndarray:
    """dipy's DKI parameter vector (N, 27): eigenvalues (descending), eigenvectors (columns, row-major), W."""
    evals, evecs = tensor.decompose_tensor(D)
    return np.concatenate([evals, evecs.reshape(len(D), 9), W], axis=1)


def dki_signal(
    D: np.ndarray, W: np.ndarray, s0: np.ndarray, bvals: np.ndarray, bvecs: np.ndarray, chunk: int = 20000
) -> np.ndarray:
    """The DKI signal ``S0 exp(-b D(g) + b^2 MD^2 W(g) / 6)``, float32 (N, n_volumes).

    Same as `dipy.reconst.dki.dki_prediction` (tested against it) but vectorised: dipy's own design matrix times
    the parameter vector [D (6), W MD^2 (15), -log S0], in float64 chunks of `chunk` voxels; b-values (g,) in
    s/mm^2 and b-vectors (g, 3) as for `gradient_table`.
    """
    design = tensor.dki_design(bvals, bvecs)
    md = np.trace(D, axis1=1, axis2=2) / 3.0
    params = np.concatenate(
        [lower_triangular(D), W * (md**2)[:, None], -np.log(np.asarray(s0, dtype=np.float64))[:, None]], axis=1
    )
    out = np.empty((len(D), design.shape[0]), dtype=np.float32)
    for start in range(0, len(D), chunk):
        out[start : start + chunk] = np.exp(params[start : start + chunk] @ design.T)
    return out


def scalar_maps(D: np.ndarray, W: np.ndarray, min_kurtosis: float, max_kurtosis: float) -> dict[str, np.ndarray]:
    """True FA, MD (mm^2/s) and MK, each (N,), through dipy's functions (`dmriscope.tensor`; MK clipped like the fit's).

    MK uses `dmriscope.kurtosis.mean_kurtosis_batched`, dipy's analytic `mean_kurtosis` vectorised over voxels
    (tested equal to dipy to 1e-13 in tests/test_dki.py; ~12x faster, which halves the synthesis time).
    """
    params = dki_params(D, W)
    evals = params[:, :3]
    return {
        "FA": tensor.fractional_anisotropy(evals),
        "MD": tensor.mean_diffusivity(evals),
        "MK": mean_kurtosis_batched(params, min_kurtosis, max_kurtosis),
    }


def tissue_microstructure(
    tissue: np.ndarray, f_wm: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per-voxel (f, f_iso, d_iso, s0), each (N,), from tissue codes (N,) and white-matter f (N; used where WM)."""
    tissue = np.asarray(tissue)
    if np.any(tissue == BACKGROUND):
        raise ValueError("tissue_microstructure: background voxels have no microstructure")
    f = np.where(tissue == WM, np.asarray(f_wm, dtype=np.float64), 0.0)
    f_iso = np.zeros(len(tissue))
    d_iso = np.full(len(tissue), D_FREE)
    s0 = np.full(len(tissue), S0_WM)
    for code, spec in TISSUES.items():
        here = tissue == code
        f[here], f_iso[here], d_iso[here], s0[here] = spec.f, spec.f_iso, spec.d_iso, spec.s0
    return f, f_iso, d_iso, s0


def voxel_tensors(
    tissue: np.ndarray, f_wm: np.ndarray, directions: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """D (N, 3, 3), W (N, 15) and S0 (N,) of brain voxels from tissue codes, WM f and fibre directions (N, 3)."""
    f, f_iso, d_iso, s0 = tissue_microstructure(tissue, f_wm)
    D, W = mixture_tensors(*compartments(f, f_iso, d_iso, directions))
    return D, W, s0
