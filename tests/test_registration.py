"""Registration to the FA template: a known nonlinear deformation is undone, transforms are reusable, runs are
deterministic, the FSL command lines are right, QC numbers are right, and bad inputs stop with one line."""

from __future__ import annotations

import stat
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from scipy import ndimage, stats

from dmriscope.io import InputError, save_nifti
from dmriscope.registration import (
    INTERPOLATORS,
    Transforms,
    ants_apply,
    applywarp_command,
    check_fsl,
    fsl_commands,
    register_fa,
    warp_maps,
    write_identity_affine,
    write_identity_warp,
)
from dmriscope.registration_qc import masked_correlation, render_overlays, resample_by_header

SHAPE = (32, 32, 32)
VOXEL_MM = 4.0
AFFINE = np.diag([VOXEL_MM, VOXEL_MM, VOXEL_MM, 1.0])
AFFINE[:3, 3] = -VOXEL_MM * (np.array(SHAPE) - 1) / 2
# (centre in voxels from the middle, radii in voxels, FA) of the "tracts"; asymmetric so a mirror image differs
BLOBS = [
    ((-4, -3, 2), (6, 2, 2), 0.6),
    ((5, 2, -1), (2, 7, 2), 0.7),
    ((0, 5, 4), (3, 3, 1.5), 0.5),
    ((-2, -6, -4), (2, 2, 5), 0.8),
    ((3, -2, 5), (4, 2, 1.5), 0.55),
]


def phantom_fa(shape: tuple[int, int, int] = SHAPE) -> np.ndarray:
    """A smooth FA-like volume: an ellipsoidal brain at FA 0.15 holding five elongated high-FA blobs."""
    grid = np.indices(shape).astype(float) - ((np.array(shape) - 1) / 2)[:, None, None, None]
    x, y, z = grid
    brain = (x / (0.38 * shape[0])) ** 2 + (y / (0.40 * shape[1])) ** 2 + (z / (0.36 * shape[2])) ** 2 <= 1
    fa = 0.15 * brain
    for (cx, cy, cz), (rx, ry, rz), value in BLOBS:
        inside = ((x - cx) / rx) ** 2 + ((y - cy) / ry) ** 2 + ((z - cz) / rz) ** 2 <= 1
        fa = np.where(inside & brain, value, fa)
    return (ndimage.gaussian_filter(fa, 0.8) * brain).astype(np.float32)


def deform(volume: np.ndarray, scale: float = 1.1, amplitude: float = 1.5) -> np.ndarray:
    """`volume` enlarged by `scale` about the centre and bent by a smooth sinusoidal displacement (voxels)."""
    shape = volume.shape
    grid = np.indices(shape).astype(float)
    centre = (np.array(shape) - 1) / 2
    coords = []
    for i in range(3):
        j, k = (i + 1) % 3, (i + 2) % 3
        bend = amplitude * np.sin(2 * np.pi * grid[j] / shape[j]) * np.cos(2 * np.pi * grid[k] / shape[k])
        coords.append(centre[i] + (grid[i] - centre[i]) / scale + bend)
    return ndimage.map_coordinates(volume, coords, order=1, mode="constant").astype(np.float32)


def run_register(tmp: Path, moving: Path, template: Path, name: str, **kwargs) -> tuple[dict, dict[str, Path]]:
    out = {
        key: tmp / name / f"{key}{ext}"
        for key, ext in (
            ("fa", ".nii.gz"),
            ("affine", ".mat"),
            ("warp", ".nii.gz"),
            ("qc_tsv", ".tsv"),
        )
    }
    row = register_fa(moving, template, out["fa"], out["affine"], out["warp"], out["qc_tsv"], subject=name, **kwargs)
    return row, out


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("registration")
    template = phantom_fa()
    moving = deform(template)
    paths = {
        "tmp": tmp,
        "template": tmp / "template.nii.gz",
        "moving": tmp / "moving_fa.nii.gz",
        "moving2x": tmp / "moving_2fa.nii.gz",
        "mirror": tmp / "mirror_fa.nii.gz",
    }
    save_nifti(template, AFFINE, paths["template"])
    save_nifti(moving, AFFINE, paths["moving"])
    save_nifti(2 * moving, AFFINE, paths["moving2x"])
    save_nifti(template[::-1, ::-1, ::-1], AFFINE, paths["mirror"])  # same outline, blobs elsewhere: no match
    return paths


@pytest.fixture(scope="module")
def syn(images) -> tuple[dict, dict[str, Path]]:
    return run_register(images["tmp"], images["moving"], images["template"], "syn", seed=1, threads=1)


def test_syn_undoes_a_known_deformation(syn, images):
    row, out = syn
    # The planted deformation is real (r well below 1 before) and registration removes most of it. 0.95: the
    # template's own blobs against a mirrored blob layout only reach r ~ 0.4 after SyN (next test), while a fully
    # recovered warp leaves only the blur of two linear resamplings (r ~ 0.98 measured).
    assert row["corr_before"] < 0.85
    assert row["corr_after"] > row["corr_before"] + 0.1
    assert row["corr_after"] > 0.95
    tsv = pd.read_csv(out["qc_tsv"], sep="\t")
    assert tsv.loc[0, "corr_after"] == pytest.approx(row["corr_after"], abs=1e-6)
    assert tsv.loc[0, "subject"] == "syn" and tsv.loc[0, "backend"] == "ants"
    registered = nib.load(out["fa"])
    assert registered.shape == SHAPE and np.allclose(registered.affine, AFFINE)
    assert np.asarray(registered.dataobj).min() >= 0
    template = np.asarray(nib.load(images["template"]).dataobj)
    assert tsv.loc[0, "n_voxels"] == int((template > 0).sum())
    assert nib.load(out["warp"]).shape[-1] == 3  # a vector displacement field


def test_qc_figures_for_every_subject(syn, images, tmp_path):
    (_, out), (_, affine) = (
        syn,
        run_register(images["tmp"], images["moving"], images["template"], "aff", ants_transform="Affine"),
    )
    pngs = [tmp_path / "qc" / "syn.png", tmp_path / "qc" / "aff.png"]
    render_overlays(
        registered=[out["fa"], affine["fa"]],
        qc_tsvs=[out["qc_tsv"], affine["qc_tsv"]],
        template=images["template"],
        pngs=pngs,
    )
    assert all(png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for png in pngs)
    assert pngs[0].read_bytes() != pngs[1].read_bytes()  # each subject's own map and title
    small = tmp_path / "small.nii.gz"
    save_nifti(np.ones((8, 8, 8)), AFFINE, small)
    broken = tmp_path / "broken.tsv"
    broken.write_text("subject\n")
    for registered, qc_tsv, pattern in (
        (small, out["qc_tsv"], "small.nii.gz.*template grid"),
        (out["fa"], broken, "broken.tsv"),
    ):
        with pytest.raises(InputError, match=pattern):
            render_overlays(
                registered=[registered], qc_tsvs=[qc_tsv], template=images["template"], pngs=[tmp_path / "x.png"]
            )
    assert not (tmp_path / "x.png").exists()


def test_unrelated_image_does_not_reach_the_bound(images):
    row, _ = run_register(images["tmp"], images["mirror"], images["template"], "mirror", seed=1)
    assert row["corr_after"] < 0.7


def test_nonlinear_beats_affine_only(syn, images):
    row, out = run_register(images["tmp"], images["moving"], images["template"], "affine", ants_transform="Affine")
    assert syn[0]["corr_before"] < row["corr_after"] < syn[0]["corr_after"]
    # a linear-only transform still writes a warp file: the identity field, all zeros
    assert not np.any(np.asarray(nib.load(out["warp"]).dataobj))


def test_saved_transforms_carry_other_maps(syn, images):
    _, out = syn
    tmp = images["tmp"] / "reuse"
    outputs = [tmp / "FA.nii.gz", tmp / "2FA.nii.gz", tmp / "shifted.nii.gz"]
    moving = np.asarray(nib.load(images["moving"]).dataobj)
    save_nifti(moving - 0.01, AFFINE, tmp / "shifted_in.nii.gz")  # negative outside the brain
    warp_maps(
        [images["moving"], images["moving2x"], tmp / "shifted_in.nii.gz"],
        images["template"],
        out["affine"],
        out["warp"],
        outputs,
    )
    registered = np.asarray(nib.load(out["fa"]).dataobj)
    again, doubled, shifted = (np.asarray(nib.load(path).dataobj) for path in outputs)
    assert np.allclose(again, registered, atol=1e-6)
    assert np.allclose(doubled, 2 * registered, rtol=1e-5, atol=1e-6)
    # maps are non-negative: interpolated negatives are clipped to 0, positive values pass unchanged
    assert shifted.min() == 0
    inside = registered > 0.02
    assert inside.sum() > 1000 and np.allclose(shifted[inside], registered[inside] - 0.01, atol=1e-5)


def test_same_seed_same_output_other_seed_differs(syn, images):
    _, out = syn
    _, same = run_register(images["tmp"], images["moving"], images["template"], "same", seed=1, threads=1)
    _, other = run_register(images["tmp"], images["moving"], images["template"], "other", seed=2, threads=1)
    first = np.asarray(nib.load(out["fa"]).dataobj)
    assert np.array_equal(first, np.asarray(nib.load(same["fa"]).dataobj))
    assert np.array_equal(np.asarray(nib.load(out["warp"]).dataobj), np.asarray(nib.load(same["warp"]).dataobj))
    assert not np.array_equal(first, np.asarray(nib.load(other["fa"]).dataobj))  # the seed reaches ANTs


def test_header_orientation_is_respected(images, tmp_path):
    """A volume stored mirrored along x with a mirrored affine is the same image: identity transforms return it
    on the template grid unchanged, and header-only resampling already matches the template."""
    template = np.asarray(nib.load(images["template"]).dataobj)
    flip = np.diag([-1.0, 1.0, 1.0, 1.0])
    flip[0, 3] = SHAPE[0] - 1
    flipped_affine = AFFINE @ flip
    save_nifti(template[::-1], flipped_affine, tmp_path / "flipped.nii.gz")
    write_identity_affine(tmp_path / "id.mat")
    write_identity_warp(template, AFFINE, tmp_path / "id_warp.nii.gz")
    warp_maps(
        [tmp_path / "flipped.nii.gz"],
        images["template"],
        tmp_path / "id.mat",
        tmp_path / "id_warp.nii.gz",
        [tmp_path / "out.nii.gz"],
    )
    assert np.allclose(np.asarray(nib.load(tmp_path / "out.nii.gz").dataobj), template, atol=1e-5)
    resampled = resample_by_header(template[::-1], flipped_affine, SHAPE, AFFINE)
    assert np.allclose(resampled, template, atol=1e-5)


# ------------------------------------------------------------------------------------------------------------ QC
def test_masked_correlation_matches_scipy():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(2, 6, 7, 8))
    b += a
    mask = rng.random((6, 7, 8)) > 0.3
    assert masked_correlation(a, b, mask) == pytest.approx(stats.pearsonr(a[mask], b[mask]).statistic)
    assert np.isnan(masked_correlation(a, np.ones_like(a), mask))


def test_resample_by_header_shifts_by_the_affine():
    data = np.random.default_rng(1).random((10, 11, 12)).astype(np.float32)
    shifted = AFFINE.copy()
    shifted[0, 3] += 2 * VOXEL_MM  # moving voxel i sits where template voxel i + 2 is
    out = resample_by_header(data, shifted, data.shape, AFFINE)
    assert np.allclose(out[2:], data[:-2], atol=1e-6)
    assert not np.any(out[:2])


# ----------------------------------------------------------------------------------------------------------- FSL
FAKE_TOOL = """#!{python}
import shutil, sys
args = sys.argv[1:]
opt = {{a.split("=", 1)[0]: a.split("=", 1)[1] for a in args if a.startswith("--") and "=" in a}}
name = "{name}"
if name == "flirt":
    i = args.index("-omat")
    open(args[i + 1], "w").write("1 0 0 0\\n0 1 0 0\\n0 0 1 0\\n0 0 0 1\\n")
    shutil.copyfile(args[args.index("-in") + 1], args[args.index("-out") + 1])
elif name == "fnirt":
    open(opt["--aff"]).read()  # fails unless flirt ran first
    shutil.copyfile(opt["--in"], opt["--cout"])  # a stand-in for the coefficient file
else:
    open(opt["--warp"], "rb").read()
    shutil.copyfile(opt["--in"], opt["--out"])  # an identity warp
"""


@pytest.fixture
def fake_fsl(tmp_path, monkeypatch) -> Path:
    """$FSLDIR with flirt/fnirt/applywarp stand-ins that write identity results (FSL is not installed here)."""
    fsldir = tmp_path / "fsl"
    (fsldir / "bin").mkdir(parents=True)
    for name in ("flirt", "fnirt", "applywarp"):
        tool = fsldir / "bin" / name
        tool.write_text(FAKE_TOOL.format(python=sys.executable, name=name))
        tool.chmod(tool.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("FSLDIR", str(fsldir))
    monkeypatch.delenv("FSLDEVDIR", raising=False)
    return fsldir


def test_fsl_command_lines(fake_fsl, tmp_path):
    moving, fixed = tmp_path / "fa.nii.gz", tmp_path / "tpl.nii.gz"
    flirt, fnirt = fsl_commands(moving, fixed, tmp_path, "FA_2_FMRIB58_1mm")
    affine = str(tmp_path / "affine.mat")
    assert flirt[0] == str(fake_fsl / "bin" / "flirt")
    assert flirt[flirt.index("-in") + 1] == str(moving) and flirt[flirt.index("-ref") + 1] == str(fixed)
    assert flirt[flirt.index("-dof") + 1] == "12" and flirt[flirt.index("-omat") + 1] == affine
    assert fnirt[0] == str(fake_fsl / "bin" / "fnirt")
    assert {
        f"--in={moving}",
        f"--ref={fixed}",
        f"--aff={affine}",
        "--config=FA_2_FMRIB58_1mm",
        f"--cout={tmp_path / 'warp.nii.gz'}",
    } <= set(fnirt)
    apply = applywarp_command(moving, fixed, tmp_path / "out.nii.gz", tmp_path / "warp.nii.gz")
    assert {
        f"--in={moving}",
        f"--ref={fixed}",
        f"--out={tmp_path / 'out.nii.gz'}",
        f"--warp={tmp_path / 'warp.nii.gz'}",
        "--interp=trilinear",
    } <= set(apply)
    assert not any(a.startswith("--premat") for a in apply)  # the fnirt coefficients already hold the affine
    sinc = applywarp_command(moving, fixed, tmp_path / "out.nii.gz", tmp_path / "warp.nii.gz", "sinc")
    assert "--interp=sinc" in sinc


def test_sinc_resampling_keeps_more_noise_variance_off_the_grid(tmp_path):
    """Half a voxel off the grid, linear interpolation leaves 1/8 of white noise's variance (a size-dependent
    moire once a brain's scale moves it through the offsets; README, "Brain size"); the windowed sinc ~1/2."""
    noise = np.random.default_rng(0).standard_normal(SHAPE).astype(np.float32)
    shifted = AFFINE.copy()
    shifted[:3, 3] += VOXEL_MM / 2
    transforms = Transforms(affine=tmp_path / "identity.mat", warp=tmp_path / "identity_warp.nii.gz")
    write_identity_affine(transforms.affine)
    write_identity_warp(np.zeros(SHAPE, dtype=np.float32), AFFINE, transforms.warp)
    inner = (slice(6, -6),) * 3
    variance = {
        name: float(ants_apply(noise, shifted, np.zeros(SHAPE), AFFINE, transforms, name)[inner].var())
        for name in INTERPOLATORS
    }
    assert variance["linear"] == pytest.approx(0.125, abs=0.03)
    assert variance["sinc"] > 0.35


def test_fsl_backend_writes_the_same_outputs(fake_fsl, images, tmp_path):
    row, out = run_register(tmp_path, images["moving"], images["template"], "fsl", backend="fsl")
    assert out["affine"].read_text().split() == [str(v) for v in np.eye(4, dtype=int).ravel()]
    moving = np.asarray(nib.load(images["moving"]).dataobj)
    assert np.array_equal(np.asarray(nib.load(out["warp"]).dataobj), moving)  # the fake fnirt's --cout, copied
    assert np.allclose(np.asarray(nib.load(out["fa"]).dataobj), moving)  # identity applywarp
    assert row["backend"] == "fsl" and row["corr_after"] == pytest.approx(row["corr_before"], abs=1e-5)
    warp_maps(
        [images["moving2x"]], images["template"], out["affine"], out["warp"], [tmp_path / "2fa.nii.gz"], backend="fsl"
    )
    assert np.allclose(np.asarray(nib.load(tmp_path / "2fa.nii.gz").dataobj), 2 * moving)


def test_fsl_missing_is_one_line(monkeypatch, tmp_path):
    monkeypatch.delenv("FSLDIR", raising=False)
    with pytest.raises(InputError, match=r"registration\.backend.*\$FSLDIR is not set"):
        check_fsl()
    (tmp_path / "bin").mkdir()
    monkeypatch.setenv("FSLDIR", str(tmp_path))
    with pytest.raises(InputError, match=r"bin/flirt"):
        check_fsl()


# ------------------------------------------------------------------------------------------------------ bad input
def test_bad_inputs_name_the_file(images, tmp_path):
    zeros = tmp_path / "zeros.nii.gz"
    save_nifti(np.zeros(SHAPE), AFFINE, zeros)
    truncated = tmp_path / "truncated.nii.gz"
    truncated.write_bytes(images["moving"].read_bytes()[:2000])
    missing = tmp_path / "no_template.nii.gz"
    cases = [
        (zeros, images["template"], "zeros.nii.gz.*all zeros"),
        (truncated, images["template"], "truncated.nii.gz"),
        (images["moving"], missing, "no_template.nii.gz.*not found"),
    ]
    for moving, template, pattern in cases:
        with pytest.raises(InputError, match=pattern) as info:
            run_register(tmp_path, moving, template, "bad")
        assert "\n" not in str(info.value)
    with pytest.raises(InputError, match="registration.backend"):
        run_register(tmp_path, images["moving"], images["template"], "bad", backend="elastix")
    with pytest.raises(InputError, match="nope.mat.*not found"):
        warp_maps(
            [images["moving"]], images["template"], tmp_path / "nope.mat", images["moving"], [tmp_path / "x.nii.gz"]
        )
    assert not (tmp_path / "bad").exists() or not any((tmp_path / "bad").iterdir())  # nothing half-written
