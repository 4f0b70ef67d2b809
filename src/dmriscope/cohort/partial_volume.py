"""Partial volume: a native voxel's signal integrated over k x k x k sub-voxel points instead of read at its centre.

A real MRI voxel averages the signal of everything inside it, so tissue borders, region borders and the texture are
box-filtered at the acquisition's voxel size. Point sampling (k = 1, the phantom's original scheme) reads the
template nearest-neighbour at the voxel centre: a border lands in one voxel or the next with nothing in between. (It
is not what leaves brain size in registered maps after a blur: README, "Brain size".) With k > 1 each native voxel
is the mixture of its k^3 sub-points (centres of equal sub-cubes, carried into template space by the voxel's own
affine approximation of the native->template map: x = x_centre + J offset). Every sub-point is already a Gaussian
mixture of compartments (`microstructure.compartments`), so their average is one, too: weights s0_j f_c,j / sum_j
s0_j, S0 = the mean of the sub-points' s0 (background sub-points contribute nothing). The signal stays the exact DKI
signal of the mixture's (D, W), as for every phantom voxel, so a noiseless fit still recovers the voxel's truth
exactly.

A voxel belongs to the brain when at least half of its sub-points do; its S0 then falls with its brain fraction.
"""

from __future__ import annotations

import numpy as np

from dmriscope.cohort import microstructure as ms


def subvoxel_offsets(k: int, voxel_mm: float) -> np.ndarray:
    """Centres of the k^3 equal sub-cubes of a voxel, relative to its centre (k^3, 3) in mm."""
    if k < 1:
        raise ValueError(f"synthetic.partial_volume_samples must be >= 1, got {k}")
    steps = ((np.arange(k) + 0.5) / k - 0.5) * voxel_mm
    return np.stack(np.meshgrid(steps, steps, steps, indexing="ij"), axis=-1).reshape(-1, 3)


def sub_points(points: np.ndarray, jacobian: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Template points (N, S, 3) of the S sub-points of N voxels with centres `points` (N, 3) and map Jacobians
    dx/dy (N, 3, 3); `offsets` (S, 3) in native mm."""
    return points[:, None, :] + np.einsum("nij,sj->nsi", jacobian, offsets)


def voxel_mixture(
    tissue: np.ndarray, f_wm: np.ndarray, directions: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """D (N, 3, 3), W (N, 15) and S0 (N,) of voxels that each average S sub-points.

    tissue (N, S) tissue codes (0 = background, no signal); f_wm (N, S) white-matter intra-axonal fractions;
    directions (N, S, 3) unit fibre directions. Every voxel needs at least one non-background sub-point.
    """
    n, s = tissue.shape
    inside = tissue > ms.BACKGROUND
    if not inside.any(axis=1).all():
        raise ValueError("voxel_mixture: a voxel has no brain sub-point")
    f, f_iso, d_iso, s0 = ms.tissue_microstructure(tissue[inside], f_wm[inside])
    fractions, tensors = ms.compartments(f, f_iso, d_iso, directions[inside])
    weights = np.zeros((n, s, fractions.shape[1]))
    weights[inside] = fractions * s0[:, None]
    all_tensors = np.zeros((n, s, *tensors.shape[1:]))
    all_tensors[inside] = tensors
    total_s0 = weights.sum(axis=(1, 2))
    k = s * fractions.shape[1]
    D, W = ms.mixture_tensors(weights.reshape(n, k) / total_s0[:, None], all_tensors.reshape(n, k, 3, 3))
    return D, W, total_s0 / s
