"""A subject's gradient files: read (.bval/.bvec as dipy reads them, with numpy) and checked against the configured
DKI shells before any fit (units, missing shells, vector lengths, volume counts).

A bval file in ms/um^2 (every value divided by 1000, as some toolboxes write it) puts every volume within the b0
tolerance, and one in s/m^2 (x 1e6) puts every volume far off every shell; both used to pass silently (the first
counted 288 b0s and gave MD 1000x too large) or fail deep inside the fit. Here they stop with one line that names
the file, says what was found and what is expected.
"""

from __future__ import annotations

import io
import os
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from dmriscope.io import InputError
from dmriscope.tensor import UNIT_ATOL

SHELL_TOLERANCE = 50.0  # s/mm^2: a volume belongs to a configured shell when |b - shell| <= this
B0_THRESHOLD = 50.0  # s/mm^2: volumes at or below this are b0s (their b-vectors may be zero), as in dipy


def found_shells(bvals: np.ndarray, tolerance: float) -> list[float]:
    """The distinct b-values of the file, grouped within ``tolerance`` (each group's median), ascending."""
    values = np.sort(np.asarray(bvals, float))
    groups: list[list[float]] = []
    for b in values:
        if groups and b - groups[-1][-1] <= tolerance:
            groups[-1].append(float(b))
        else:
            groups.append([float(b)])
    return [float(np.median(g)) for g in groups]


def describe(shells: Sequence[float]) -> str:
    return "[" + ", ".join(f"{b:g}" for b in shells) + "]"


def check_shells(
    bvals: np.ndarray, shells: Sequence[float], tolerance: float, bval_path: str | os.PathLike
) -> np.ndarray:
    """Boolean (g,) of the volumes on a configured shell; ``InputError`` for a scheme in other units or one that
    lacks a configured shell (b0 included). Volumes off every shell are kept out (the caller logs how many)."""
    bvals = np.asarray(bvals, float)
    shells = [float(s) for s in shells]
    top, wanted = float(bvals.max()), max(shells)
    found = found_shells(bvals, tolerance * (top / wanted if top > 0 and wanted > 0 else 1.0))  # in the file's units
    expected = f"expected s/mm^2 near dki.bvals {describe(shells)}"
    if wanted > 100 and 0 < top <= wanted / 100:
        raise InputError(
            f"{bval_path}: b-values look like ms/um^2 (largest {top:g}, shells {describe(found)}); {expected} "
            "(multiply the file by 1000)"
        )
    if top >= wanted * 100:
        raise InputError(
            f"{bval_path}: b-values look like s/m^2 (largest {top:g}, shells {describe(found)}); {expected} "
            "(divide the file by 1e6)"
        )
    distance = np.abs(bvals[:, None] - np.asarray(shells)[None, :])
    per_shell = (distance <= tolerance).sum(axis=0)
    missing = [s for s, n in zip(shells, per_shell) if n == 0]
    if missing:
        raise InputError(
            f"{bval_path}: no volume within {tolerance:g} of shell(s) {describe(missing)}; the file has shells "
            f"{describe(found)}; {expected} (set dki.bvals to the scheme's shells)"
        )
    return distance.min(axis=1) <= tolerance


def select_volumes(bvals: np.ndarray, shells: Sequence[float], tolerance: float = SHELL_TOLERANCE) -> np.ndarray:
    """Boolean (g,): volumes whose b (s/mm^2) lies within `tolerance` of one of the configured `shells`."""
    distance = np.abs(np.asarray(bvals, float)[:, None] - np.asarray(shells, float)[None, :])
    return (distance <= tolerance).any(axis=1)


def shell_counts(bvals: np.ndarray, shells: Sequence[float], tolerance: float = SHELL_TOLERANCE) -> np.ndarray:
    """Number of volumes (b in s/mm^2) within `tolerance` of each shell, (n_shells,) int."""
    distance = np.abs(np.asarray(bvals, float)[:, None] - np.asarray(shells, float)[None, :])
    return (distance <= tolerance).sum(axis=0)


def read_fsl_table(path: str | os.PathLike) -> np.ndarray:
    """A .bval/.bvec text file as `dipy.io.gradients.read_bvals_bvecs` reads it: tabs and commas count as spaces,
    ``np.loadtxt``, squeezed (numpy only: importing dipy.io costs 0.3 s per job)."""
    with open(path) as handle:
        return np.squeeze(np.loadtxt(io.StringIO(re.sub(r"(\t|,)", " ", handle.read()))))


def fsl_bvecs(table: np.ndarray) -> np.ndarray:
    """b-vectors (g, 3) from a table of 3 rows (FSL) or 3 columns, as `read_bvals_bvecs` orients them."""
    if 3 not in table.shape:
        raise ValueError("bvec file should have three rows")
    table = np.atleast_2d(table)
    return (table if table.shape[1] == 3 else table.T).astype(float)


def read_gradients(bval: str | os.PathLike, bvec: str | os.PathLike, n_volumes: int) -> tuple[np.ndarray, np.ndarray]:
    """FSL b-values (g,) and b-vectors (g, 3) checked against the image's volume count; one-line InputErrors."""
    for path in (bval, bvec):
        if not Path(path).exists():
            raise InputError(f"{path}: file not found")
    try:
        bvals = np.atleast_1d(read_fsl_table(bval)).astype(float)
    except (OSError, ValueError) as exc:
        raise InputError(f"{bval}: cannot read b-values ({exc})") from None
    try:
        bvecs = fsl_bvecs(read_fsl_table(bvec))
    except (OSError, ValueError) as exc:
        raise InputError(f"{bvec}: cannot read b-vectors ({exc})") from None
    if bvals.ndim != 1 or len(bvals) != n_volumes:
        raise InputError(f"{bval}: {bvals.size} b-values for {n_volumes} volumes")
    if len(bvecs) != n_volumes:
        raise InputError(f"{bvec}: {len(bvecs)} b-vectors for {n_volumes} volumes")
    if not (np.all(np.isfinite(bvals)) and np.all(np.isfinite(bvecs))) or bvals.min() < 0:
        raise InputError(f"{bval} / {bvec}: negative or non-finite gradient values")
    norms = np.linalg.norm(bvecs, axis=1)
    bad = (bvals > B0_THRESHOLD) & (np.abs(norms - 1.0) > UNIT_ATOL)
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        raise InputError(
            f"{bvec}: {int(bad.sum())} b-vectors of diffusion-weighted volumes are not unit length "
            f"(volume {first}: norm {norms[first]:.4f})"
        )
    return bvals, bvecs
