"""HCP's diffusion scheme: 18 b0 + 90 directions at each of b = 1000, 2000, 3000 s/mm^2 (288 volumes).

The shipped table (data/hcp_scheme.bval/.bvec) was made once by `generate_hcp_scheme` (electrostatic repulsion,
dipy's `disperse_charges`, ~35 s) and is loaded by `load_hcp_scheme`; `python -m dmriscope.cohort.gradients`
regenerates it.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import numpy as np

SHELLS = (1000.0, 2000.0, 3000.0)
N_DIRECTIONS = 90
N_B0 = 18


def generate_hcp_scheme(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """bvals (288,) and unit bvecs (288, 3): one repulsion-optimised direction set per shell, b0s interleaved."""
    from dipy.core.sphere import HemiSphere, disperse_charges

    rng = np.random.default_rng(seed)
    bvals, bvecs = [], []
    for shell in SHELLS:
        theta = np.arccos(rng.uniform(-1, 1, N_DIRECTIONS))
        phi = rng.uniform(0, 2 * np.pi, N_DIRECTIONS)
        hemi, _ = disperse_charges(HemiSphere(theta=theta, phi=phi), 5000)
        bvecs.append(hemi.vertices)
        bvals.append(np.full(N_DIRECTIONS, shell))
    dw_vals, dw_vecs = np.concatenate(bvals), np.concatenate(bvecs)
    order = rng.permutation(len(dw_vals))  # HCP acquires shells interleaved
    dw_vals, dw_vecs = dw_vals[order], dw_vecs[order]
    b0_at = set(np.linspace(0, len(dw_vals) + N_B0 - 1, N_B0).round().astype(int))
    out_vals, out_vecs, k = [], [], 0
    for i in range(len(dw_vals) + N_B0):
        if i in b0_at:
            out_vals.append(0.0)
            out_vecs.append(np.zeros(3))
        else:
            out_vals.append(dw_vals[k])
            out_vecs.append(dw_vecs[k])
            k += 1
    return np.asarray(out_vals), np.asarray(out_vecs)


def _data_dir() -> Path:
    return Path(str(resources.files("dmriscope") / "data"))


def load_hcp_scheme() -> tuple[np.ndarray, np.ndarray]:
    """The shipped scheme: bvals (288,), bvecs (288, 3)."""
    bvals = np.loadtxt(_data_dir() / "hcp_scheme.bval")
    bvecs = np.loadtxt(_data_dir() / "hcp_scheme.bvec").T
    return bvals, bvecs


def write_fsl_gradients(bvals: np.ndarray, bvecs: np.ndarray, bval_path: str | Path, bvec_path: str | Path) -> None:
    """FSL layout: one row of b-values; three rows (x, y, z) of unit vectors."""
    np.savetxt(bval_path, bvals[None, :], fmt="%g")
    np.savetxt(bvec_path, bvecs.T, fmt="%.6f")


if __name__ == "__main__":
    vals, vecs = generate_hcp_scheme()
    write_fsl_gradients(vals, vecs, _data_dir() / "hcp_scheme.bval", _data_dir() / "hcp_scheme.bvec")
    print(f"wrote {len(vals)} volumes to {_data_dir()}")
