"""The DKI fit on real human diffusion signal, against dipy's own fit and MRtrix3's independent C++ fit.

Not part of the workflow: benchmarks/dki_agreement.py prints the agreement table, tests/test_dki_agreement.py checks it.
Real acquisitions that ship inside packages (nothing is copied into this repository):

- ``isbi2015``: the in-vivo human white-matter voxels of the ISBI 2015 challenge (Ferizi et al., NMR Biomed 2017;
  6 genu + 6 fornix voxels) from dmipy 1.0.5's wheel, installed ``--no-deps`` by ``dmriscope.sh test`` (dmipy pins
  scipy==1.4.1, which has no Python 3.11 build; only its data files are read, dmipy is never imported). Of its 35
  shells, the TE = 67 ms block is a DKI scheme: 31 b0 and b = 1010 and 2100 s/mm^2 with 90 directions each (its
  b = 100 shell is left out, as intravoxel incoherent motion biases it). b = (gamma G delta)^2 (Delta - delta/3).
- ``small_101D``: dipy's bundled q-space acquisition (6 x 10 x 10 voxels at 2.5 mm, one b0, b up to 4100 s/mm^2);
  volumes with b <= 3000 s/mm^2 (DKI's range), voxels whose b0 is above the volume's 20th percentile and that have no
  zero in those volumes (3 voxels do; the packages clip log(0) differently).

MRtrix3 (Debian's mrtrix3 3.0.3): ``dwi2tensor -ols -iter 0`` is the same OLS estimator as dipy's and dmriscope's
OLS, so that pair must agree to the float32 rounding of the signals MRtrix reads. Its weighted fits are other
estimators: measured here, 3.0.3's ``-iter 1`` gives the same as ``-iter 0`` (weights = the measured signal, squared)
and ``-ols -iter 2`` equals dipy's WLS step applied twice, so none is dipy's one-step WLS; the table shows MRtrix's
default (``-iter 2``) against dmriscope's WLS as the difference a user would see. ``tensor2metric`` gives FA and
ADC (= MD). Its 3.0.3 has no kurtosis metrics, so MK comes
from MRtrix's kurtosis tensor (reordered from MRtrix's element order to dipy's): dipy's analytic formula, and a
numerical mean of the apparent kurtosis over 10,000 directions that uses no dipy code (it differs from the analytic
MK by its quadrature and by clipping K per direction rather than the integrand).
"""

from __future__ import annotations

import importlib.metadata
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np

from dmriscope import dki, shells

GYROMAGNETIC_RATIO = 2.6751525e8  # rad/s/T, 1H
ISBI_DIR = "dmipy/data/isbi2015_white_matter_challenge"
ISBI_TE = 0.067  # s
ISBI_SHELLS = (0.0, 1010.0, 2100.0)  # s/mm^2, within shells.SHELL_TOLERANCE
SMALL_101D_MAX_B = 3000.0
# MRtrix3's kurtosis-tensor element order (dwi2tensor -dkt), as indices (i, j, k, l), and dipy's order
MRTRIX_KT = ("xxxx", "yyyy", "zzzz", "xxxy", "xxxz", "xyyy", "xzzz", "yyyz", "yzzz", "xxyy", "xxzz", "yyzz", "xxyz",
             "xyyz", "xyzz")  # fmt: skip
DIPY_KT = ("xxxx", "yyyy", "zzzz", "xxxy", "xxxz", "xyyy", "yyyz", "xzzz", "yzzz", "xxyy", "xxzz", "yyzz", "xxyz",
           "xyyz", "xyzz")  # fmt: skip
KURTOSIS_RANGE = {"min_kurtosis": 0.0, "max_kurtosis": 3.0}  # MK clipped as the workflow clips it
N_DIRECTIONS = 10000  # directions of the numerical MK


@dataclass(frozen=True)
class Acquisition:
    """Real signals (n_voxels, g) with their b-values (g,) in s/mm^2 and unit b-vectors (g, 3)."""

    name: str
    bvals: np.ndarray
    bvecs: np.ndarray
    signals: np.ndarray


def isbi2015() -> Acquisition:
    """The 12 ISBI 2015 voxels (genu then fornix) at TE = 67 ms, b0 + b 1010 + b 2100; FileNotFoundError without
    the dmipy wheel's data."""
    try:
        dist = importlib.metadata.distribution("dmipy")
    except importlib.metadata.PackageNotFoundError:
        raise FileNotFoundError("dmipy 1.0.5 is not installed: pip install --no-deps dmipy==1.0.5") from None
    folder = Path(dist.locate_file(ISBI_DIR))
    scheme = np.loadtxt(folder / "isbi_schemefile.txt", skiprows=1)
    signals = np.hstack([np.loadtxt(folder / f"{name}.txt", skiprows=1) for name in ("genu", "fornix")]).T
    bvecs, G, Delta, delta, te = scheme[:, :3], scheme[:, 3], scheme[:, 4], scheme[:, 5], scheme[:, 6]
    bvals = (GYROMAGNETIC_RATIO * G * delta) ** 2 * (Delta - delta / 3.0) * 1e-6
    keep = np.isclose(te, ISBI_TE) & shells.select_volumes(bvals, ISBI_SHELLS)
    return Acquisition("ISBI 2015 in vivo WM (12 voxels, TE 67 ms)", bvals[keep], bvecs[keep], signals[:, keep])


def small_101d() -> Acquisition:
    """dipy's small_101D: volumes with b <= 3000 s/mm^2, voxels whose b0 exceeds the 20th percentile, no zeros."""
    from dipy.data import get_fnames

    image, bval, bvec = get_fnames(name="small_101D")
    data = np.asarray(nib.load(image).dataobj, dtype=np.float64)
    bvals, bvecs = shells.read_gradients(bval, bvec, data.shape[3])
    keep = bvals <= SMALL_101D_MAX_B
    b0 = data[..., bvals <= shells.B0_THRESHOLD].mean(axis=-1)
    # and no zero in the kept volumes: a log of 0 is clipped differently by each package (dipy: 1e-4)
    voxels = (b0 > np.percentile(b0, 20)) & (data[..., keep] > 0).all(axis=-1)
    n_voxels = int(voxels.sum())
    return Acquisition(
        f"dipy small_101D ({n_voxels} voxels, b <= 3000)", bvals[keep], bvecs[keep], data[voxels][:, keep]
    )


def fit_dmriscope(acq: Acquisition, method: str = "WLS") -> dict[str, np.ndarray]:
    """dmriscope's batched fit (WLS or OLS): FA, MD (mm^2/s), MK."""
    return dki.fit_signals(acq.signals, dki.make_design(acq.bvals, acq.bvecs), **KURTOSIS_RANGE, method=method)


def fit_dipy(acq: Acquisition, method: str = "WLS") -> dict[str, np.ndarray]:
    """dipy's own `DiffusionKurtosisModel` fit (WLS or OLS), voxel by voxel."""
    from dipy.core.gradients import gradient_table
    from dipy.reconst.dki import DiffusionKurtosisModel

    fit = DiffusionKurtosisModel(gradient_table(acq.bvals, bvecs=acq.bvecs), fit_method=method).fit(acq.signals)
    return {"FA": fit.fa, "MD": fit.md, "MK": fit.mk(**KURTOSIS_RANGE)}


def mrtrix_available() -> bool:
    return all(shutil.which(tool) for tool in ("dwi2tensor", "tensor2metric"))


def fit_mrtrix(acq: Acquisition, ols: bool = True) -> dict[str, np.ndarray]:
    """MRtrix3's fit: ``dwi2tensor -ols -iter 0`` (OLS, the estimator both sides share exactly) or its default
    (``-iter 2``: WLS weighted by the measured signal, then reweighting as 3.0.3 counts it; module docstring).
    FA and MD from `tensor2metric`; MK from MRtrix's kurtosis tensor twice: dipy's analytic formula (``MK``) and,
    independent of any dipy code, the mean apparent kurtosis over `N_DIRECTIONS` directions (``MK_directional``)."""
    fit = ["-ols", "-iter", "0"] if ols else []
    with tempfile.TemporaryDirectory(prefix="dmriscope_mrtrix_") as tmp:
        folder = Path(tmp)
        n = len(acq.signals)
        nib.save(nib.Nifti1Image(acq.signals.reshape(n, 1, 1, -1).astype(np.float32), np.eye(4)), folder / "dwi.nii")
        # MRtrix's own scheme format (x y z b in scanner space): FSL's image-space convention would flip x
        np.savetxt(folder / "grad.b", np.column_stack([acq.bvecs, acq.bvals]), fmt="%.8f")
        _mrtrix(folder, "dwi2tensor", *fit, "-grad", "grad.b", "-dkt", "dkt.nii", "dwi.nii", "dt.nii")
        _mrtrix(folder, "tensor2metric", "-fa", "fa.nii", "-adc", "md.nii", "dt.nii")
        maps = {"FA": _load(folder / "fa.nii"), "MD": _load(folder / "md.nii")}
        dt, dkt = _load(folder / "dt.nii"), _load(folder / "dkt.nii")
    maps["MK"] = analytic_mk(dt, dkt)
    maps["MK_directional"] = directional_mk(dt, dkt)
    return maps


def _dipy_tensors(dt: np.ndarray, dkt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """MRtrix's dt (n, 6: Dxx, Dyy, Dzz, Dxy, Dxz, Dyz) and dkt (n, 15, `MRTRIX_KT`) as dipy's (n, 3, 3) tensor and
    (n, 15) kurtosis elements in `DIPY_KT` order."""
    tensors = dt[:, [[0, 3, 4], [3, 1, 5], [4, 5, 2]]]
    return tensors, dkt[:, [MRTRIX_KT.index(name) for name in DIPY_KT]]


def analytic_mk(dt: np.ndarray, dkt: np.ndarray) -> np.ndarray:
    """dipy's analytic MK (`dmriscope.kurtosis`) of MRtrix's tensors, clipped to [0, 3] like the fit's."""
    from dmriscope.kurtosis import mean_kurtosis_batched
    from dmriscope.tensor import decompose_tensor

    tensors, kt = _dipy_tensors(dt, dkt)
    evals, evecs = decompose_tensor(tensors)
    params = np.concatenate([evals, evecs.reshape(len(evals), 9), kt], axis=1)
    return mean_kurtosis_batched(params, **KURTOSIS_RANGE)


def directional_mk(dt: np.ndarray, dkt: np.ndarray, n_directions: int = N_DIRECTIONS) -> np.ndarray:
    """MK as the mean over a Fibonacci sphere of the apparent kurtosis K(n) = MD^2 W(n) / D(n)^2, clipped to
    [0, 3] per direction (dipy's ``min/max_kurtosis`` semantics)."""
    tensors, kt = _dipy_tensors(dt, dkt)
    k = np.arange(n_directions) + 0.5
    z = 1.0 - 2.0 * k / n_directions
    phi = np.pi * (1.0 + 5**0.5) * k
    n = np.column_stack([np.sqrt(1 - z**2) * np.cos(phi), np.sqrt(1 - z**2) * np.sin(phi), z])  # (m, 3)
    d_n = np.einsum("mi,vij,mj->vm", n, tensors, n)
    counts = np.array([[name.count(axis) for axis in "xyz"] for name in DIPY_KT])  # (15, 3) powers
    multiplicity = np.array([_permutations(name) for name in DIPY_KT])
    w_n = kt @ (multiplicity[:, None] * np.prod(n[None] ** counts[:, None, :], axis=2))  # (v, m)
    md = np.trace(tensors, axis1=1, axis2=2) / 3.0
    apparent = np.clip(md[:, None] ** 2 * w_n / d_n**2, *KURTOSIS_RANGE.values())
    return apparent.mean(axis=1)


def _permutations(name: str) -> int:
    """Distinct orderings of a kurtosis index (xxxy: 4, xxyy: 6, xxyz: 12)."""
    from math import factorial

    out = factorial(4)
    for axis in "xyz":
        out //= factorial(name.count(axis))
    return out


def agreement(reference: dict[str, np.ndarray], other: dict[str, np.ndarray]) -> dict[str, tuple[float, float]]:
    """Per metric of `other` that `reference` has (MK_analytic compares with MK): (max, median) |difference|."""
    rows = {}
    for metric, values in other.items():
        ref = reference[metric.split("_")[0]]
        delta = np.abs(np.asarray(values, float) - np.asarray(ref, float))
        rows[metric] = (float(delta.max()), float(np.median(delta)))
    return rows


def _mrtrix(folder: Path, *args: str) -> None:
    result = subprocess.run([*args, "-force", "-quiet"], cwd=folder, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"{args[0]} failed ({result.returncode}): {result.stderr.strip()[-500:]}")


def _load(path: Path) -> np.ndarray:
    data = np.asarray(nib.load(path).dataobj, dtype=np.float64)
    return data.reshape(data.shape[0], -1) if data.ndim > 3 else data.reshape(-1)
