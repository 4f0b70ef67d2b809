"""dipy's analytic mean kurtosis, vectorised over voxels.

`mean_kurtosis_batched` computes what `dipy.reconst.dki.mean_kurtosis(params, min_kurtosis=, max_kurtosis=)` computes
(dipy 1.12's Cython `mean_kurtosis_analytical`, Tabesh et al. 2011): the kurtosis tensor rotated into the diffusion
tensor's eigenbasis, weighted by the F1/F2 functions of the eigenvalues (Carlson's elliptic integrals R_F and R_D),
branch for branch with dipy's tolerances and its per-element Carlson stopping rule. dipy loops over voxels at
~30-70 us a voxel, more than the whole batched fit; this takes ~3-5 us. tests/test_dki.py checks it against dipy on
fitted parameters and on every branch (isotropic, prolate, oblate, near-threshold, non-positive eigenvalues).
"""

from __future__ import annotations

import numpy as np

_EV_MIN = 2e-7  # dipy: a voxel with an eigenvalue at or below this (mm^2/s) has MK = 0
_EQUAL = 2.5e-2  # dipy: two eigenvalues closer than this (relative) are treated as equal
_KT_ORDER = [(4, 0, 0), (0, 4, 0), (0, 0, 4), (3, 1, 0), (3, 0, 1), (1, 3, 0), (0, 3, 1), (1, 0, 3), (0, 1, 3),
             (2, 2, 0), (2, 0, 2), (0, 2, 2), (2, 1, 1), (1, 2, 1), (1, 1, 2)]  # fmt: skip
# position in dipy's 15 kurtosis elements (x, y, z counts above) of each W_ijkl, (i, j, k, l) in C order
_KT_INDEX = np.array([_KT_ORDER.index(tuple(np.bincount(ijkl, minlength=3))) for ijkl in np.ndindex(3, 3, 3, 3)])


def _carlson_rf(x: np.ndarray, y: np.ndarray, z: np.ndarray, errtol: float = 3e-4) -> np.ndarray:
    """Carlson's R_F elementwise, iterating each element exactly as long as dipy's `carlson_rf_single`."""
    xn, yn, zn = x.copy(), y.copy(), z.copy()
    an = (x + y + z) / 3.0
    q = (3.0 * errtol) ** (-1.0 / 6.0) * np.maximum.reduce([np.abs(an - x), np.abs(an - y), np.abs(an - z)])
    active, n = q > np.abs(an), 0
    while active.any():
        xr, yr, zr = np.sqrt(xn[active]), np.sqrt(yn[active]), np.sqrt(zn[active])
        lam = xr * (yr + zr) + yr * zr
        for arr in (xn, yn, zn, an):
            arr[active] = (arr[active] + lam) * 0.25
        n += 1
        active &= 4.0**-n * q > np.abs(an)
    big_x, big_y = 1.0 - xn / an, 1.0 - yn / an
    big_z = -big_x - big_y
    e2, e3 = big_x * big_y - big_z * big_z, big_x * big_y * big_z
    return an**-0.5 * (1.0 - e2 / 10.0 + e3 / 14.0 + e2 * e2 / 24.0 - 3.0 / 44.0 * e2 * e3)


def _carlson_rd(x: np.ndarray, y: np.ndarray, z: np.ndarray, errtol: float = 1e-4) -> np.ndarray:
    """Carlson's R_D elementwise, iterating each element exactly as long as dipy's `carlson_rd_single`."""
    xn, yn, zn = x.copy(), y.copy(), z.copy()
    a0 = (x + y + 3.0 * z) / 5.0
    an = a0.copy()
    q = (errtol / 4.0) ** (-1.0 / 6.0) * np.maximum.reduce([np.abs(an - x), np.abs(an - y), np.abs(an - z)])
    total, n = np.zeros_like(x), np.zeros_like(x)
    active = q > np.abs(an)
    while active.any():
        xr, yr, zr = np.sqrt(xn[active]), np.sqrt(yn[active]), np.sqrt(zn[active])
        lam = xr * (yr + zr) + yr * zr
        total[active] += 4.0 ** -n[active] / (zr * (zn[active] + lam))
        n[active] += 1
        for arr in (xn, yn, zn, an):
            arr[active] = (arr[active] + lam) * 0.25
        active &= 4.0**-n * q > np.abs(an)
    big_x, big_y = (a0 - x) / (4.0**n * an), (a0 - y) / (4.0**n * an)
    big_z = -(big_x + big_y) / 3.0
    e2, e3 = big_x * big_y - 6.0 * big_z**2, (3.0 * big_x * big_y - 8.0 * big_z**2) * big_z
    e4, e5 = 3.0 * (big_x * big_y - big_z**2) * big_z**2, big_x * big_y * big_z**3
    series = 1 - 3 / 14 * e2 + e3 / 6 + 9 / 88 * e2**2 - 3 / 22 * e4 - 9 / 52 * e2 * e3 + 3 / 26 * e5
    return 4.0**-n * an**-1.5 * series + 3.0 * total


def _f2_axial(l1: np.ndarray, l3: np.ndarray) -> np.ndarray:
    """dipy's F2 for two equal eigenvalues l3 (l1 != l3)."""
    x = 1.0 - l1 / l3
    root = np.sqrt(np.abs(x))
    alpha = np.where(x > 0, np.arctanh(np.minimum(root, 1 - 1e-16)) / root, np.arctan(root) / root)
    return (6.0 * (l1 + 2 * l3) ** 2 / (144.0 * l3**2 * (l1 - l3) ** 2)) * (
        l3 * (l1 + 2 * l3) + l1 * (l1 - 4 * l3) * alpha
    )


def _f2(a: np.ndarray, b: np.ndarray, c: np.ndarray, rf: np.ndarray, rd: np.ndarray) -> np.ndarray:
    """dipy's F2m for positive eigenvalues; rf, rd = R_F, R_D(a/b, a/c, 1)."""
    bc = np.abs(b - c) < b * _EQUAL
    iso = bc & (np.abs(a - b) < b * _EQUAL)
    out = np.where(iso, 6.0 / 15.0, 0.0)
    axial = bc & ~iso
    out[axial] = _f2_axial(a[axial], (b[axial] + c[axial]) / 2.0)
    g = ~bc
    a, b, c, rf, rd = a[g], b[g], c[g], rf[g], rd[g]
    root = np.sqrt(b * c)
    out[g] = (
        (a + b + c) ** 2 / (3.0 * (b - c) ** 2) * ((b + c) / root * rf + (2.0 * a - b - c) / (3.0 * root) * rd - 2.0)
    )
    return out


def _f1(a: np.ndarray, b: np.ndarray, c: np.ndarray, rf: np.ndarray, rd: np.ndarray) -> np.ndarray:
    """dipy's F1m for positive eigenvalues; rf, rd = R_F, R_D(a/b, a/c, 1)."""
    ab, ac = np.abs(a - b) < a * _EQUAL, np.abs(a - c) < a * _EQUAL
    out = np.where(ab & ac, 0.2, 0.0)
    for pair, other, mean in ((ab & ~ac, c, (a + b) / 2.0), (ac & ~ab, b, (a + c) / 2.0)):
        m, o = mean[pair], other[pair]
        out[pair] = _f2(o, m, m, np.ones_like(o), np.ones_like(o)) / 2.0  # b == c: R_F, R_D unused
    g = ~(ab | ac)
    a, b, c, rf, rd = a[g], b[g], c[g], rf[g], rd[g]
    root = np.sqrt(b * c)
    out[g] = (
        (a + b + c) ** 2
        / (18.0 * (a - b) * (a - c))
        * (root / a * rf + (3.0 * a * a - a * b - a * c - b * c) / (3.0 * a * root) * rd - 1.0)
    )
    return out


def mean_kurtosis_batched(params: np.ndarray, min_kurtosis: float, max_kurtosis: float) -> np.ndarray:
    """`dipy.reconst.dki.mean_kurtosis(params, min_kurtosis=, max_kurtosis=)` (analytic) for params (n, 27) -> (n,).

    Voxels with an eigenvalue <= 2e-7 mm^2/s get 0 (unclipped, as in dipy); the rest are clipped to the range.
    """
    evals = params[:, :3]
    valid = (evals > _EV_MIN).all(axis=1)
    l1, l2, l3 = (np.where(valid, evals[:, k], 1.0) for k in range(3))
    basis = params[:, 3:12].reshape(-1, 3, 3)  # columns are the eigenvectors
    squares = np.einsum("nia,nja->nija", basis, basis).reshape(-1, 9, 3)
    kurtosis = params[:, 12:27][:, _KT_INDEX].reshape(-1, 9, 9)
    rotated = np.einsum("nia,nij,njb->nab", squares, kurtosis, squares, optimize=True)  # W'_aabb
    mk = np.zeros(len(params))
    for (a, b, c), w1, (i, j) in (((l1, l2, l3), 0, (1, 2)), ((l2, l1, l3), 1, (0, 2)), ((l3, l2, l1), 2, (0, 1))):
        one = np.ones_like(a)
        rf, rd = _carlson_rf(a / b, a / c, one), _carlson_rd(a / b, a / c, one)
        mk += _f1(a, b, c, rf, rd) * rotated[:, w1, w1] + _f2(a, b, c, rf, rd) * rotated[:, i, j]
    return np.where(valid, np.clip(mk, min_kurtosis, max_kurtosis), 0.0)
