"""Registration of native-space DKI maps to the FA template: FA drives it, the same transform carries MD and MK.

Two backends write the same two transform files, so `warp_maps` can carry any other map later:

- ``ants`` (antspyx): affine + SyN (``registration.ants_transform``). ``xfm_affine.mat`` is antsRegistration's
  ITK affine (``0GenericAffine.mat``), ``xfm_warp.nii.gz`` its forward displacement field (``1Warp.nii.gz``, a 5D
  vector NIfTI in ITK's LPS convention). They are applied as ``[warp, affine]`` (the affine acts first on the
  moving image). A linear-only transform (Affine, Rigid) gets an all-zero (identity) warp; SyNOnly an identity affine.
- ``fsl`` (fslpy wrappers, needs ``$FSLDIR``): ``flirt -dof 12`` then ``fnirt --aff --config`` (TBSS style).
  ``xfm_affine.mat`` is the FLIRT 4x4 text matrix, ``xfm_warp.nii.gz`` the FNIRT coefficient file (``--cout``),
  which already contains the affine, so ``applywarp --warp`` alone maps a native image onto the template.

Every map is resampled onto the template grid (``registration.interpolator``: linear, or a windowed sinc) and
clipped at 0 (FA, MD, MK are non-negative; interpolation at the brain edge can leave negative values).
Determinism (ants): the seed goes to antsRegistration's ``--random-seed``; ITK's thread count comes from
``ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS``, which ITK reads once per process, so `set_itk_threads` must run before the
first ITK call. Bit-identical results across runs are guaranteed with 1 thread (more threads may change the
floating-point summation order).

`import_ants` imports antspyx without six subpackages that its ``__init__`` imports eagerly and dmriscope never
calls (``learn``, ``plotting``, ``deeplearn``, ``contrib``, ``segmentation``, with scikit-learn and matplotlib
behind them, and ``math``, whose ``quantile`` imports statsmodels; ``ants.registration`` calls none of them):
importing them would cost every register_fa job CPU for nothing (README, "Benchmarks", has the measures). They stay
importable (``import ants.plotting``); only their names are missing from the ``ants`` namespace.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import nibabel as nib
import numpy as np

from dmriscope.io import InputError, atomic_path, load_nifti, save_nifti

log = logging.getLogger(__name__)

BACKENDS = ("ants", "fsl")
FSL_TOOLS = ("flirt", "fnirt", "applywarp")
# config registration.interpolator -> (ANTs' interpolator, applywarp's --interp)
INTERPOLATORS = {"linear": ("linear", "trilinear"), "sinc": ("lanczosWindowedSinc", "sinc")}


@dataclass(frozen=True)
class Transforms:
    """The two transform files of one registration (meaning depends on the backend, see the module docstring)."""

    affine: Path
    warp: Path


def set_itk_threads(threads: int) -> None:
    """Set ITK's thread count for this process; effective only before ITK's first use in the process."""
    if threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    os.environ["ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS"] = str(threads)


def load_volume(path: str | os.PathLike, role: str) -> tuple[np.ndarray, np.ndarray]:
    """Load a 3D map (float32, shape (X, Y, Z)) and its 4x4 affine; an all-zero image is an `InputError`."""
    data, affine = load_nifti(path, ndim=3)
    if not np.any(data):
        raise InputError(f"{path}: {role} image is all zeros")
    return data, affine


def check_backend(backend: str) -> None:
    """Raise `InputError` naming the config key for an unknown backend."""
    if backend not in BACKENDS:
        raise InputError(f"config key 'registration.backend': {backend!r} is not one of {', '.join(BACKENDS)}")


# ----------------------------------------------------------------------------------------------------------- ants
UNUSED_ANTS_PACKAGES = ("learn", "plotting", "deeplearn", "contrib", "segmentation", "math")


def import_ants() -> ModuleType:
    """antspyx, imported without `UNUSED_ANTS_PACKAGES`: empty placeholders stand in for them while ``ants``
    initialises (its ``from .learn import *`` then imports nothing) and are removed again afterwards, so an explicit
    ``import ants.learn`` later loads the real subpackage."""
    if "ants" in sys.modules:
        return sys.modules["ants"]
    placeholders = {}
    for name in UNUSED_ANTS_PACKAGES:
        placeholder = ModuleType(f"ants.{name}", "placeholder while dmriscope imports antspyx")
        placeholder.__all__ = []
        placeholders[placeholder.__name__] = placeholder
    sys.modules.update(placeholders)
    try:
        import ants
    finally:
        for name, placeholder in placeholders.items():
            if sys.modules.get(name) is placeholder:
                del sys.modules[name]
    for name in UNUSED_ANTS_PACKAGES:
        if getattr(ants, name, None) is placeholders[f"ants.{name}"]:
            delattr(ants, name)
    return ants


def _to_ants(data: np.ndarray, affine: np.ndarray) -> Any:
    """A 3D array with its RAS affine (nibabel convention) as an ANTsImage (LPS physical space)."""
    ants = import_ants()

    img = nib.Nifti1Image(np.asarray(data, dtype=np.float32), affine)
    img.header.set_xyzt_units("mm", "sec")
    return ants.from_nibabel_nifti(img)


def ants_register(
    moving: np.ndarray,
    moving_affine: np.ndarray,
    fixed: np.ndarray,
    fixed_affine: np.ndarray,
    workdir: Path,
    *,
    transform: str = "SyN",
    seed: int = 1,
) -> Transforms:
    """Register `moving` (native FA, shape (X, Y, Z)) to `fixed` (the template) with antspyx.

    Transform files are written into `workdir`; the returned paths always hold an affine (.mat) and a warp
    (.nii.gz), identity ones where the transform type has no such stage.
    """
    ants = import_ants()
    from ants.config import set_ants_deterministic

    # antspyx 0.6.3 reads the seed from its config (a `random_seed=` keyword is silently ignored);
    # on=False sets the seed without its side effects (forcing 1 thread, refusing non-"Repro" transforms).
    set_ants_deterministic(on=False, seed_value=int(seed))
    fixed_img = _to_ants(fixed, fixed_affine)
    moving_img = _to_ants(moving, moving_affine)
    log.info(
        "antsRegistration %s (seed %d, %s threads)",
        transform,
        seed,
        os.environ.get("ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS", "default"),
    )
    result = ants.registration(
        fixed_img, moving_img, type_of_transform=transform, outprefix=str(workdir / "ants_"), random_seed=int(seed)
    )
    fwd = [Path(p) for p in result["fwdtransforms"]]
    affines = [p for p in fwd if p.name.endswith("GenericAffine.mat")]
    warps = [p for p in fwd if p.name.endswith("Warp.nii.gz") and not p.name.endswith("InverseWarp.nii.gz")]
    affine_path, warp_path = workdir / "affine.mat", workdir / "warp.nii.gz"
    if affines:
        shutil.copyfile(affines[0], affine_path)
    else:
        write_identity_affine(affine_path)
    if warps:
        shutil.copyfile(warps[0], warp_path)
    else:
        write_identity_warp(fixed, fixed_affine, warp_path)
    return Transforms(affine=affine_path, warp=warp_path)


def write_identity_affine(path: Path) -> None:
    """Write an identity ITK affine transform (.mat), for transform types without an affine stage."""
    ants = import_ants()

    ants.write_transform(ants.create_ants_transform(transform_type="AffineTransform", dimension=3), str(path))


def write_identity_warp(fixed: np.ndarray, fixed_affine: np.ndarray, path: Path) -> None:
    """Write an all-zero displacement field (shape fixed.shape + (3,), mm) on the template grid: the identity warp."""
    ants = import_ants()

    fixed_img = _to_ants(fixed, fixed_affine)
    zero = np.zeros(fixed_img.shape + (3,), dtype=np.float32)
    field = ants.from_numpy(
        zero, origin=fixed_img.origin, spacing=fixed_img.spacing, direction=fixed_img.direction, has_components=True
    )
    ants.image_write(field, str(path))


def ants_apply(
    data: np.ndarray,
    affine: np.ndarray,
    fixed: np.ndarray,
    fixed_affine: np.ndarray,
    transforms: Transforms,
    interpolator: str = "linear",
) -> np.ndarray:
    """Carry a native map (shape (X, Y, Z)) onto the template grid (fixed's shape); `INTERPOLATORS` has the keys."""
    ants = import_ants()

    out = ants.apply_transforms(
        _to_ants(fixed, fixed_affine),
        _to_ants(data, affine),
        transformlist=[str(transforms.warp), str(transforms.affine)],
        interpolator=INTERPOLATORS[interpolator][0],
        defaultvalue=0,
    )
    return out.numpy().astype(np.float32)


# ------------------------------------------------------------------------------------------------------------ fsl
def check_fsl(tools: Sequence[str] = FSL_TOOLS) -> Path:
    """Return $FSLDIR; one-line `InputError` when it is unset or a tool is missing from $FSLDIR/bin."""
    fsldir = os.environ.get("FSLDIR")
    if not fsldir:
        raise InputError(
            "config key 'registration.backend': 'fsl' needs FSL but $FSLDIR is not set "
            "(install FSL or use backend 'ants')"
        )
    for tool in tools:
        exe = Path(fsldir) / "bin" / tool
        if not (exe.is_file() and os.access(exe, os.X_OK)):
            raise InputError(
                f"config key 'registration.backend': 'fsl' needs {exe}, which is missing "
                "(broken FSL install? or use backend 'ants')"
            )
    return Path(fsldir)


def _fsl_steps(moving: Path, fixed: Path, workdir: Path, fnirt_config: str) -> list[tuple[Callable, tuple, dict]]:
    """The FSL calls of one registration, as (wrapper, args, kwargs): flirt 12 dof, then fnirt seeded by it."""
    from fsl import wrappers

    affine, warp = workdir / "affine.mat", workdir / "warp.nii.gz"
    return [
        (
            wrappers.flirt,
            (str(moving), str(fixed)),
            {"omat": str(affine), "dof": 12, "out": str(workdir / "flirt.nii.gz")},
        ),
        (
            wrappers.fnirt,
            (str(moving),),
            {"ref": str(fixed), "aff": str(affine), "config": fnirt_config, "cout": str(warp)},
        ),
    ]


def fsl_commands(moving: Path, fixed: Path, workdir: Path, fnirt_config: str) -> list[list[str]]:
    """The command lines `fsl_register` runs (fslpy's ``cmdonly=True``), for logs and tests; needs $FSLDIR."""
    check_fsl()
    return [
        func(*args, cmdonly=True, **kwargs) for func, args, kwargs in _fsl_steps(moving, fixed, workdir, fnirt_config)
    ]


def fsl_register(moving: Path, fixed: Path, workdir: Path, *, fnirt_config: str) -> Transforms:
    """flirt (12 dof) + fnirt (--aff, --config) of `moving` to `fixed` (NIfTI files); transforms go into `workdir`."""
    check_fsl()
    os.environ["FSLOUTPUTTYPE"] = "NIFTI_GZ"
    for func, args, kwargs in _fsl_steps(moving, fixed, workdir, fnirt_config):
        log.info("%s", " ".join(func(*args, cmdonly=True, **kwargs)))
        func(*args, **kwargs)
    return Transforms(affine=workdir / "affine.mat", warp=workdir / "warp.nii.gz")


def applywarp_command(src: Path, fixed: Path, out: Path, warp: Path, interpolator: str = "linear") -> list[str]:
    """The applywarp command line that carries `src` onto the template grid; needs $FSLDIR."""
    from fsl import wrappers

    check_fsl(("applywarp",))
    interp = INTERPOLATORS[interpolator][1]
    return wrappers.applywarp(str(src), str(fixed), str(out), warp=str(warp), interp=interp, cmdonly=True)


def fsl_apply(
    src: Path, fixed: Path, transforms: Transforms, workdir: Path, interpolator: str = "linear"
) -> np.ndarray:
    """applywarp `src` (a NIfTI file) with the fnirt coefficients; return the template-grid array."""
    from fsl import wrappers

    check_fsl(("applywarp",))
    os.environ["FSLOUTPUTTYPE"] = "NIFTI_GZ"
    out = Path(tempfile.mkdtemp(dir=workdir)) / "warped.nii.gz"
    log.info("%s", " ".join(applywarp_command(src, fixed, out, transforms.warp, interpolator)))
    wrappers.applywarp(str(src), str(fixed), str(out), warp=str(transforms.warp), interp=INTERPOLATORS[interpolator][1])
    data, _ = load_nifti(out, ndim=3)
    return data


# ----------------------------------------------------------------------------------------------------- the rules
def clip_nonnegative(data: np.ndarray, name: str) -> np.ndarray:
    """Clip negative interpolation values to 0; log how many there were."""
    n_neg = int(np.count_nonzero(data < 0))
    if n_neg:
        log.info("%s: clipped %d negative voxels (min %.3g) to 0", name, n_neg, float(data.min()))
    return np.maximum(data, 0).astype(np.float32)


def _copy_atomic(src: Path, dst: str | os.PathLike) -> None:
    with atomic_path(dst) as tmp:
        shutil.copyfile(src, tmp)


def register_fa(
    fa: str | os.PathLike,
    template: str | os.PathLike,
    out_fa: str | os.PathLike,
    out_affine: str | os.PathLike,
    out_warp: str | os.PathLike,
    qc_tsv: str | os.PathLike,
    *,
    backend: str = "ants",
    seed: int = 1,
    ants_transform: str = "SyN",
    fnirt_config: str = "FA_2_FMRIB58_1mm",
    threads: int = 1,
    subject: str = "",
    interpolator: str = "linear",
) -> dict[str, Any]:
    """Register one subject's FA to the template; write the registered FA, both transforms and the QC TSV.

    Returns the QC row (correlations with the template inside template > 0, before = header-affine resampling only).
    The QC figure is drawn for all subjects at once by `dmriscope.registration_qc.render_overlays` (rule
    render_registration_qc), so no registration job imports matplotlib.
    """
    from dmriscope.registration_qc import qc_row, write_qc_tsv

    check_backend(backend)
    set_itk_threads(threads)
    moving, moving_affine = load_volume(fa, "FA")
    fixed, fixed_affine = load_volume(template, "template")
    with tempfile.TemporaryDirectory(prefix="dmriscope_reg_") as tmp:
        workdir = Path(tmp)
        if backend == "ants":
            transforms = ants_register(
                moving, moving_affine, fixed, fixed_affine, workdir, transform=ants_transform, seed=seed
            )
            warped = ants_apply(moving, moving_affine, fixed, fixed_affine, transforms, interpolator)
            method = ants_transform
        else:
            transforms = fsl_register(Path(fa), Path(template), workdir, fnirt_config=fnirt_config)
            warped = fsl_apply(Path(fa), Path(template), transforms, workdir, interpolator)
            method = f"flirt+fnirt:{fnirt_config}"
        warped = clip_nonnegative(warped, f"{fa} (registered)")
        row = qc_row(
            moving, moving_affine, warped, fixed, fixed_affine, subject=subject, backend=backend, method=method
        )
        _copy_atomic(transforms.affine, out_affine)
        _copy_atomic(transforms.warp, out_warp)
    save_nifti(warped, fixed_affine, out_fa)
    write_qc_tsv(row, qc_tsv)
    log.info("registered %s: correlation with template %.3f -> %.3f", fa, row["corr_before"], row["corr_after"])
    return row


def warp_maps(
    maps: Sequence[str | os.PathLike],
    template: str | os.PathLike,
    affine: str | os.PathLike,
    warp: str | os.PathLike,
    outputs: Sequence[str | os.PathLike],
    *,
    backend: str = "ants",
    threads: int = 1,
    interpolator: str = "linear",
) -> None:
    """Carry native maps (e.g. MD, MK) onto the template grid with `register_fa`'s transform files."""
    check_backend(backend)
    if len(maps) != len(outputs):
        raise ValueError(f"{len(maps)} maps but {len(outputs)} outputs")
    set_itk_threads(threads)
    fixed, fixed_affine = load_volume(template, "template")
    transforms = Transforms(affine=Path(affine), warp=Path(warp))
    for path in (transforms.affine, transforms.warp):
        if not path.is_file():
            raise InputError(f"{path}: transform file not found")
    with tempfile.TemporaryDirectory(prefix="dmriscope_warp_") as tmp:
        for src, dst in zip(maps, outputs):
            data, data_affine = load_nifti(src, ndim=3)
            if backend == "ants":
                warped = ants_apply(data, data_affine, fixed, fixed_affine, transforms, interpolator)
            else:
                warped = fsl_apply(Path(src), Path(template), transforms, Path(tmp), interpolator)
            save_nifti(clip_nonnegative(warped, str(src)), fixed_affine, dst)
            log.info("warped %s -> %s", src, dst)


def register_subject(
    *,
    fa: str,
    others: Sequence[str],
    template: str,
    out_fa: str,
    out_others: Sequence[str],
    out_affine: str,
    out_warp: str,
    qc_tsv: str,
    registration: Mapping[str, Any],
    threads: int,
    subject: str,
) -> None:
    """Rule register_fa: the subject's FA onto the template (`register_fa`, config section ``registration``), then
    MD and MK through the same transforms (`warp_maps`)."""
    backend, interpolator = registration["backend"], registration.get("interpolator", "linear")
    register_fa(
        fa, template, out_fa, out_affine, out_warp, qc_tsv, backend=backend, seed=registration["seed"],
        ants_transform=registration["ants_transform"], fnirt_config=registration["fnirt_config"], threads=threads,
        subject=subject, interpolator=interpolator,
    )  # fmt: skip
    warp_maps(others, template, out_affine, out_warp, out_others, backend=backend, threads=threads,
              interpolator=interpolator)  # fmt: skip
