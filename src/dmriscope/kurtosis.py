"""dipy's analytic mean kurtosis, vectorised over voxels.

`mean_kurtosis_batched` computes what `dipy.reconst.dki.mean_kurtosis(params, min_kurtosis=, max_kurtosis=)` computes
(dipy 1.12's Cython `mean_kurtosis_analytical`, Tabesh et al. 2011): the kurtosis tensor rotated into the diffusion
tensor's eigenbasis, weighted by the F1/F2 functions of the eigenvalues (Carlson's elliptic integrals R_F and R_D),
branch for branch with dipy's tolerances and its per-element Carlson stopping rule. dipy loops over voxels at
~30-70 us a voxel, more than the whole batched fit; this takes ~1 us. Faster than a literal vectorisation because
the rotation reads the kurtosis tensor as its symmetric 6 x 6 (Voigt) matrix (two small matmuls instead of a 9 x 9
einsum), the three eigenvalue orderings go through R_F, R_D, F1 and F2 as one stacked array, and Carlson's
duplication steps update every element, keeping each one's state from the step where dipy's rule stops it, instead
of updating only the active ones (masked gathers and scatters). Stopping later is not an option: the rule's series
variables are ~errtol^(1/6), so one more step moves R_D by ~1e-5 relative. tests/test_dki.py checks it against dipy
(rtol 1e-9) on fitted parameters and on every branch (isotropic, prolate, oblate, near-threshold, non-positive
eigenvalues); `benchmarks/dki_fit.py` times it.
"""

from __future__ import annotations

import numpy as np

_EV_MIN = 2e-7  # dipy: a voxel with an eigenvalue at or below this (mm^2/s) has MK = 0
_EQUAL = 2.5e-2  # dipy: two eigenvalues closer than this (relative) are treated as equal
_KT_ORDER = [(4, 0, 0), (0, 4, 0), (0, 0, 4), (3, 1, 0), (3, 0, 1), (1, 3, 0), (0, 3, 1), (1, 0, 3), (0, 1, 3),
             (2, 2, 0), (2, 0, 2), (0, 2, 2), (2, 1, 1), (1, 2, 1), (1, 1, 2)]  # fmt: skip
_PAIRS = ((0, 0), (1, 1), (2, 2), (0, 1), (0, 2), (1, 2))  # Voigt order of the symmetric index pairs (i, j)
# position in dipy's 15 kurtosis elements (x, y, z counts above) of each Voigt entry W_(ij)(kl), row by row
_KT_VOIGT = np.array([_KT_ORDER.index(tuple(np.bincount([*p, *q], minlength=3))) for p in _PAIRS for q in _PAIRS])
_PAIR_I, _PAIR_J = np.array(_PAIRS).T
_MULTIPLICITY = np.array([1.0, 1.0, 1.0, 2.0, 2.0, 2.0])  # (i, j) and (j, i) for the off-diagonal pairs
# the three orderings (a, b, c) of the eigenvalues that dipy sums over, and the entries W'_aaaa and W'_bbcc of each
_ORDERS = ((0, 1, 2), (1, 0, 2), (2, 1, 0))
_DIAGONAL = (0, 1, 2)
_CROSS = ((1, 2), (0, 2), (0, 1))


def _carlson_rf(x: np.ndarray, y: np.ndarray, z: np.ndarray, errtol: float = 3e-4) -> np.ndarray:
    """Carlson's R_F elementwise, each element stopped exactly where dipy's `carlson_rf_single` stops it."""
    xn, yn, zn = x.copy(), y.copy(), z.copy()
    an = (x + y + z) / 3.0
    q = (3.0 * errtol) ** (-1.0 / 6.0) * np.maximum.reduce([np.abs(an - x), np.abs(an - y), np.abs(an - z)])
    stopped = [xn.copy(), yn.copy(), zn.copy(), an.copy()]  # each element's state at its own stopping step
    active, n = q > np.abs(an), 0
    while active.any():
        xr, yr, zr = np.sqrt(xn), np.sqrt(yn), np.sqrt(zn)
        lam = xr * (yr + zr) + yr * zr
        xn, yn, zn, an = (xn + lam) * 0.25, (yn + lam) * 0.25, (zn + lam) * 0.25, (an + lam) * 0.25
        n += 1
        now = active & ~(4.0**-n * q > np.abs(an))
        for final, state in zip(stopped, (xn, yn, zn, an)):
            final[now] = state[now]
        active &= ~now
    xn, yn, zn, an = stopped
    big_x, big_y = 1.0 - xn / an, 1.0 - yn / an
    big_z = -big_x - big_y
    e2, e3 = big_x * big_y - big_z * big_z, big_x * big_y * big_z
    return an**-0.5 * (1.0 - e2 / 10.0 + e3 / 14.0 + e2 * e2 / 24.0 - 3.0 / 44.0 * e2 * e3)


def _carlson_rd(x: np.ndarray, y: np.ndarray, z: np.ndarray, errtol: float = 1e-4) -> np.ndarray:
    """Carlson's R_D elementwise, each element stopped exactly where dipy's `carlson_rd_single` stops it."""
    xn, yn, zn = x.copy(), y.copy(), z.copy()
    a0 = (x + y + 3.0 * z) / 5.0
    an = a0.copy()
    q = (errtol / 4.0) ** (-1.0 / 6.0) * np.maximum.reduce([np.abs(an - x), np.abs(an - y), np.abs(an - z)])
    total = np.zeros_like(x)
    stopped = [an.copy(), total.copy(), np.zeros_like(x)]  # A_n, the sum and n at each element's stopping step
    active, n = q > np.abs(an), 0
    while active.any():
        xr, yr, zr = np.sqrt(xn), np.sqrt(yn), np.sqrt(zn)
        lam = xr * (yr + zr) + yr * zr
        total = total + 4.0**-n / (zr * (zn + lam))
        xn, yn, zn, an = (xn + lam) * 0.25, (yn + lam) * 0.25, (zn + lam) * 0.25, (an + lam) * 0.25
        n += 1
        now = active & ~(4.0**-n * q > np.abs(an))
        for final, state in zip(stopped, (an, total, n)):
            final[now] = state[now] if np.ndim(state) else state
        active &= ~now
    an, total, steps = stopped
    big_x, big_y = (a0 - x) / (4.0**steps * an), (a0 - y) / (4.0**steps * an)
    big_z = -(big_x + big_y) / 3.0
    e2, e3 = big_x * big_y - 6.0 * big_z**2, (3.0 * big_x * big_y - 8.0 * big_z**2) * big_z
    e4, e5 = 3.0 * (big_x * big_y - big_z**2) * big_z**2, big_x * big_y * big_z**3
    series = 1 - 3 / 14 * e2 + e3 / 6 + 9 / 88 * e2**2 - 3 / 22 * e4 - 9 / 52 * e2 * e3 + 3 / 26 * e5
    return 4.0**-steps * an**-1.5 * series + 3.0 * total


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


def rotated_kurtosis(params: np.ndarray) -> np.ndarray:
    """W'_aabb, the kurtosis tensor in the diffusion tensor's eigenbasis, for dipy params (n, 27) -> (n, 3, 3).

    W'_aabb = sum_ijkl W_ijkl e_ai e_aj e_bk e_bl over the eigenvectors e_a (the columns of params[:, 3:12] as 3 x 3),
    computed as u_a^T V u_b with V the 6 x 6 Voigt matrix of W and u_a the Voigt vector of e_a e_a^T.
    """
    basis = params[:, 3:12].reshape(-1, 3, 3)  # columns are the eigenvectors
    voigt = basis[:, _PAIR_I, :] * basis[:, _PAIR_J, :] * _MULTIPLICITY[:, None]  # (n, 6, 3)
    kurtosis = params[:, 12:27][:, _KT_VOIGT].reshape(-1, 6, 6)
    return np.matmul(voigt.transpose(0, 2, 1), np.matmul(kurtosis, voigt))


def mean_kurtosis_batched(params: np.ndarray, min_kurtosis: float, max_kurtosis: float) -> np.ndarray:
    """`dipy.reconst.dki.mean_kurtosis(params, min_kurtosis=, max_kurtosis=)` (analytic) for params (n, 27) -> (n,).

    Voxels with an eigenvalue <= 2e-7 mm^2/s get 0 (unclipped, as in dipy); the rest are clipped to the range.
    """
    evals = params[:, :3]
    valid = (evals > _EV_MIN).all(axis=1)
    safe = np.where(valid[:, None], evals, 1.0)
    a, b, c = (safe[:, list(column)].T.ravel() for column in zip(*_ORDERS))  # each (3n,): the orderings stacked
    one = np.ones_like(a)
    rf, rd = _carlson_rf(a / b, a / c, one), _carlson_rd(a / b, a / c, one)
    rotated = rotated_kurtosis(params)
    diagonal = rotated[:, _DIAGONAL, _DIAGONAL].T.ravel()
    cross = rotated[:, [i for i, _ in _CROSS], [j for _, j in _CROSS]].T.ravel()
    terms = _f1(a, b, c, rf, rd) * diagonal + _f2(a, b, c, rf, rd) * cross
    mk = terms.reshape(3, -1).sum(axis=0)
    return np.where(valid, np.clip(mk, min_kurtosis, max_kurtosis), 0.0)
