"""Checks of a b-value scheme against the configured DKI shells, before any fit: units and missing shells.

A bval file in ms/um^2 (every value divided by 1000, as some toolboxes write it) puts every volume within the b0
tolerance, and one in s/m^2 (x 1e6) puts every volume far off every shell; both used to pass silently (the first
counted 288 b0s and gave MD 1000x too large) or fail deep inside the fit. Here they stop with one line that names
the file, says what was found and what is expected.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

from dmriscope.io import InputError


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
