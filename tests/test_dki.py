"""The batched DKI fit against dipy's own DiffusionKurtosisModel, against known truth, and its input checks."""

from __future__ import annotations

import gzip
import json
import re
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from dipy.core.gradients import gradient_table
from dipy.data import get_sphere
from dipy.reconst.dki import DiffusionKurtosisModel, apparent_kurtosis_coef, mean_kurtosis
from dipy.sims.voxel import multi_tensor_dki

from dmriscope import dki, shells
from dmriscope.cohort.gradients import load_hcp_scheme, write_fsl_gradients
from dmriscope.config import METRICS
from dmriscope.io import InputError
from dmriscope.kurtosis import mean_kurtosis_batched

CFG = {
    "fit_method": "WLS",
    "bvals": [0, 1000, 2000, 3000],
    "min_kurtosis": 0.0,
    "max_kurtosis": 3.0,
    "chunk_voxels": 64,
}
# batched vs dipy: measured differences are ~1e-10 (FA, MK) and ~1e-13 mm^2/s (MD); WLS and OLS differ by ~1e-2
TOL = {"FA": 1e-7, "MD": 1e-11, "MK": 1e-6}


def _simulate(gtab, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Noiseless DKI signals (n, g) with S0 = 1 of two-compartment WM-like voxels (every 10th CSF-like), and their
    diffusion (n, 6) and kurtosis (n, 15) tensors."""
    signals, dts, kts = [], [], []
    for i in range(n):
        if i % 10 == 9:
            mevals = np.array([[3.0e-3, 2.9e-3, 2.9e-3], [2.2e-3, 2.1e-3, 2.0e-3]])
        else:
            mevals = np.array(
                [
                    [rng.uniform(1.5e-3, 2.2e-3), *[rng.uniform(0.1e-3, 0.4e-3)] * 2],
                    [rng.uniform(1.0e-3, 2.0e-3), *[rng.uniform(0.5e-3, 1.0e-3)] * 2],
                ]
            )
        angles = [(rng.uniform(0, 180), rng.uniform(0, 360)) for _ in range(2)]
        fraction = rng.uniform(20, 80)
        s, dt, kt = multi_tensor_dki(
            gtab, mevals, S0=1.0, angles=angles, fractions=[fraction, 100 - fraction], snr=None
        )
        signals.append(s)
        dts.append(dt)
        kts.append(kt)
    return np.array(signals), np.array(dts), np.array(kts)


def _rician(clean: np.ndarray, s0: np.ndarray, snr: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    sigma = (s0 / snr)[:, None]
    return np.hypot(
        clean * s0[:, None] + sigma * rng.standard_normal(clean.shape), sigma * rng.standard_normal(clean.shape)
    )


@pytest.fixture(scope="module")
def scheme():
    bvals, bvecs = load_hcp_scheme()
    return bvals, bvecs, gradient_table(bvals, bvecs=bvecs)


@pytest.fixture(scope="module")
def truth(scheme):
    return _simulate(scheme[2], 300, np.random.default_rng(1))


@pytest.fixture(scope="module")
def noisy(truth):
    """Realistic noisy signals: S0 100..2000, Rician noise at b0 SNR 10..40, and the awkward cases dipy clips:
    zeros in a few voxels, one negative-valued voxel and one all-zero voxel."""
    rng = np.random.default_rng(2)
    clean = truth[0]
    signals = _rician(clean, rng.uniform(100, 2000, len(clean)), rng.choice([10.0, 20.0, 40.0], len(clean)), rng)
    signals[:4, rng.integers(0, signals.shape[1], 20)] = 0.0
    signals[4, ::7] = -5.0
    signals[5] = 0.0
    return signals


@pytest.mark.parametrize("method", ["WLS", "OLS"])
def test_batched_fit_equals_dipy(scheme, noisy, method):
    bvals, bvecs, gtab = scheme
    ours = dki.fit_signals(noisy, dki.make_design(bvals, bvecs), method=method, chunk_voxels=64)
    ref = DiffusionKurtosisModel(gtab, fit_method=method).fit(noisy)
    expected = {"FA": ref.fa, "MD": ref.md, "MK": ref.mk(min_kurtosis=0.0, max_kurtosis=3.0)}
    for metric in METRICS:
        np.testing.assert_allclose(ours[metric], expected[metric], rtol=0, atol=TOL[metric], err_msg=metric)
    other = dki.fit_signals(noisy, dki.make_design(bvals, bvecs), method="OLS" if method == "WLS" else "WLS")
    assert np.abs(other["MK"] - expected["MK"]).max() > 1000 * TOL["MK"]  # the tolerance tells the methods apart


def test_noiseless_fit_recovers_truth(scheme, truth):
    bvals, bvecs, _ = scheme
    signals, dts, kts = truth
    fitted = dki.fit_signals(signals * 500.0, dki.make_design(bvals, bvecs), method="WLS", chunk_voxels=100)
    tensors = dts[:, [0, 1, 3, 1, 2, 4, 3, 4, 5]].reshape(-1, 3, 3)
    evals = np.linalg.eigvalsh(tensors)
    md = evals.mean(axis=1)
    fa = np.sqrt(1.5 * ((evals - md[:, None]) ** 2).sum(axis=1) / (evals**2).sum(axis=1))
    # MK by definition: the directional kurtosis averaged over a dense sphere (dipy's MK is the analytic integral)
    akc = _directional_kurtosis(dts, kts, get_sphere(name="repulsion724").vertices)
    np.testing.assert_allclose(fitted["FA"], fa, atol=1e-3)
    np.testing.assert_allclose(fitted["MD"], md, atol=1e-6)
    np.testing.assert_allclose(fitted["MK"], np.clip(akc.mean(axis=1), 0, 3), atol=1e-2)
    assert np.ptp(fa) > 0.3 and np.ptp(akc.mean(axis=1)) > 0.3  # the truth varies: agreement is not by chance


def _directional_kurtosis(dts: np.ndarray, kts: np.ndarray, directions: np.ndarray) -> np.ndarray:
    """K(n) = MD^2 W(n) / D(n)^2 from the 6 DT and 15 KT elements (dipy order) for unit directions (m, 3) -> (n, m)."""
    x, y, z = directions.T
    d_terms = np.stack([x * x, 2 * x * y, y * y, 2 * x * z, 2 * y * z, z * z])
    w_terms = np.stack(
        [x**4, y**4, z**4, 4 * x**3 * y, 4 * x**3 * z, 4 * x * y**3, 4 * y**3 * z, 4 * x * z**3, 4 * y * z**3,
         6 * x**2 * y**2, 6 * x**2 * z**2, 6 * y**2 * z**2, 12 * x**2 * y * z, 12 * x * y**2 * z, 12 * x * y * z**2]
    )  # fmt: skip
    md = (dts[:, 0] + dts[:, 2] + dts[:, 5]) / 3
    return md[:, None] ** 2 * (kts @ w_terms) / (dts @ d_terms) ** 2


def test_directional_kurtosis_helper_matches_dipy(truth):
    """The test's own K(n) agrees with dipy's apparent_kurtosis_coef on the first voxels (guards the helper)."""
    _, dts, kts = truth
    sphere = get_sphere(name="repulsion100")
    tensors = dts[:5, [0, 1, 3, 1, 2, 4, 3, 4, 5]].reshape(-1, 3, 3)
    evals, evecs = np.linalg.eigh(tensors)
    params = np.concatenate([evals, evecs.reshape(5, 9), kts[:5]], axis=1)
    np.testing.assert_allclose(
        _directional_kurtosis(dts[:5], kts[:5], sphere.vertices), apparent_kurtosis_coef(params, sphere), rtol=1e-9
    )


EDGE_EVALS = (
    np.array(
        [
            [1.7, 0.5, 0.3],  # distinct
            [1.0, 1.0, 1.0],  # isotropic
            [1.0, 0.99, 0.985],  # isotropic within dipy's 2.5 %
            [1.7, 0.4, 0.4],  # prolate
            [1.7, 0.4, 0.395],  # prolate within 2.5 %
            [1.7, 0.4, 0.389],  # just outside 2.5 %
            [1.2, 1.2, 0.3],  # oblate
            [1.2, 1.19, 0.3],  # oblate within 2.5 %
            [3.0, 2.9, 2.9],  # CSF-like
            [1.5, 0.4, 1e-4],  # an eigenvalue <= 2e-7 mm^2/s: MK = 0
        ]
    )
    * 1e-3
)


def test_mean_kurtosis_batched_equals_dipy_on_every_branch(noisy, scheme):
    """dmriscope.kurtosis replicates dipy's analytic MK: edge-case eigenvalues x random rotations and kurtosis
    tensors, and the parameters fitted to the noisy signals, under four clipping ranges."""
    rng = np.random.default_rng(4)
    n_rot = 40
    evals = np.repeat(EDGE_EVALS, n_rot, axis=0)
    rotations = np.linalg.qr(rng.standard_normal((len(evals), 3, 3)))[0]
    kt = rng.normal(0.3, 0.6, (len(evals), 15))
    edge = np.concatenate([evals, rotations.reshape(-1, 9), kt], axis=1)
    design = dki.make_design(*scheme[:2])
    fitted = dki.coefficients_to_params(dki.fit_coefficients(noisy, design), design.min_diffusivity)
    for params in (edge, fitted):
        for low, high in ((0.0, 3.0), (0.5, 2.0), (-3.0 / 7, 10.0), (-1e9, 1e9)):
            expected = mean_kurtosis(params, min_kurtosis=low, max_kurtosis=high)
            np.testing.assert_allclose(mean_kurtosis_batched(params, low, high), expected, rtol=1e-9, atol=1e-12)
    unclipped = mean_kurtosis(edge, min_kurtosis=-1e9, max_kurtosis=1e9)
    assert np.ptp(unclipped) > 1 and np.all(unclipped[-n_rot:] == 0)  # values vary; the non-positive case is 0


def test_select_volumes_keeps_b_within_50_of_a_shell():
    bvals = np.array([5, 990, 1985, 3010, 500, 2060, 1950, 0])
    keep = shells.select_volumes(bvals, [0, 1000, 2000, 3000])
    assert keep.tolist() == [True, True, True, True, False, False, True, True]
    assert shells.shell_counts(bvals, [0, 1000, 2000, 3000]).tolist() == [2, 1, 2, 1]


def test_singular_system_falls_back_to_pseudo_inverse():
    normal = np.stack([np.eye(3), np.diag([1.0, 1.0, 0.0])])
    rhs = np.array([[1.0, 2.0, 3.0], [1.0, 2.0, 3.0]])
    np.testing.assert_allclose(dki._solve_stacked(normal, rhs), [[1, 2, 3], [1, 2, 0]])


# ---------------------------------------------------------------------------------------------- file level
GRID = (5, 6, 4)


def _write_subject(folder: Path, signals: np.ndarray, bvals: np.ndarray, bvecs: np.ndarray) -> dict[str, Path]:
    """A tiny subject: the first voxels of `signals` inside a box mask, zeros outside; FSL-style files."""
    mask = np.zeros(GRID, bool)
    mask[1:4, 1:5, 1:3] = True
    data = np.zeros((*GRID, signals.shape[1]), np.float32)
    data[mask] = signals[: mask.sum()]
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    paths = {k: folder / f"in_{k}" for k in ("dwi.nii.gz", "dwi.bval", "dwi.bvec", "mask.nii.gz")}
    nib.save(nib.Nifti1Image(data, affine), paths["dwi.nii.gz"])
    nib.save(nib.Nifti1Image(mask.astype(np.uint8), affine), paths["mask.nii.gz"])
    write_fsl_gradients(bvals, bvecs, paths["dwi.bval"], paths["dwi.bvec"])
    return paths


def _outputs(folder: Path) -> tuple[dict[str, Path], Path]:
    return {m: folder / "out" / f"{m}.nii.gz" for m in METRICS}, folder / "out" / "fit.json"


def _run(paths: dict[str, Path], folder: Path, cfg: dict = CFG) -> dict:
    maps, settings = _outputs(folder)
    return dki.fit_dki_files(
        paths["dwi.nii.gz"], paths["dwi.bval"], paths["dwi.bvec"], paths["mask.nii.gz"], maps, settings, cfg
    )


def test_fit_files_writes_maps_equal_to_the_fit(tmp_path, scheme, noisy, monkeypatch):
    bvals, bvecs, _ = scheme
    paths = _write_subject(tmp_path, noisy, bvals, bvecs)
    monkeypatch.setattr(dki, "READ_BLOCK_BYTES", 7 * np.prod(GRID) * 4)  # 7 volumes a block: 42 blocks
    settings = _run(paths, tmp_path)
    maps, settings_path = _outputs(tmp_path)
    mask = nib.load(paths["mask.nii.gz"]).get_fdata() > 0
    expected = dki.fit_signals(noisy[: mask.sum()].astype(np.float32), dki.make_design(bvals, bvecs))
    dead = ~noisy[: mask.sum()].any(axis=1)  # the fixture's all-zero voxel: written as 0, not fitted as tissue
    assert dead.sum() == 1
    for metric in METRICS:
        img = nib.load(maps[metric])
        assert img.get_data_dtype() == np.float32
        np.testing.assert_array_equal(img.affine, np.diag([2.0, 2.0, 2.0, 1.0]))
        values = np.asanyarray(img.dataobj)
        assert np.all(values[~mask] == 0)
        np.testing.assert_allclose(values[mask], np.where(dead, 0, expected[metric]).astype(np.float32), rtol=1e-6)
    written = json.loads(settings_path.read_text())
    assert written == settings
    assert written["fit_method"] == "WLS" and written["n_volumes"] == 288 and written["voxels_fitted"] == mask.sum()
    assert written["voxels_zero_signal"] == 1 and written["mask_affine_matches_dwi"] is True
    assert written["volumes_per_shell"] == {"0": 18, "1000": 90, "2000": 90, "3000": 90}
    assert written["min_kurtosis"] == 0.0 and written["max_kurtosis"] == 3.0 and written["dipy_version"]


def test_dead_voxels_and_a_misaligned_mask_are_warned_and_counted(tmp_path, scheme, noisy, caplog):
    """Brain-mask voxels with signal 0 in every volume are written as 0 (not as tissue with MD ~1e-13) and counted;
    a mask whose affine is not the DWI's is used voxel for voxel, with a warning and a flag in fit.json."""
    bvals, bvecs, _ = scheme
    signals = noisy.copy()
    signals[:3] = 0.0  # the first 3 mask voxels (C order) are dead, and the fixture's voxel 5
    paths = _write_subject(tmp_path, signals, bvals, bvecs)
    mask_img = nib.load(paths["mask.nii.gz"])
    nib.save(nib.Nifti1Image(np.asanyarray(mask_img.dataobj), np.diag([2.0, 2.0, 2.5, 1.0])), paths["mask.nii.gz"])
    with caplog.at_level("WARNING"):
        settings = _run(paths, tmp_path)
    assert settings["voxels_zero_signal"] == 4 and settings["mask_affine_matches_dwi"] is False
    assert "4 brain-mask voxels have signal 0" in caplog.text and "affine differs" in caplog.text
    mask = np.asanyarray(mask_img.dataobj) > 0
    for metric in METRICS:
        values = np.asanyarray(nib.load(_outputs(tmp_path)[0][metric]).dataobj)[mask]
        dead = np.isin(np.arange(mask.sum()), [0, 1, 2, 5])
        assert np.all(values[dead] == 0), metric
        assert metric == "MK" or np.all(values[~dead] != 0), metric  # MK may be clipped to 0 in live voxels


def test_fit_files_drops_volumes_off_the_shells(tmp_path, scheme, noisy):
    bvals, bvecs, _ = scheme
    extra = np.concatenate([noisy, np.full((len(noisy), 6), 123.0)], axis=1)
    extra_bvals = np.concatenate([bvals, np.full(6, 500.0)])
    extra_bvecs = np.concatenate([bvecs, np.tile([[1.0, 0.0, 0.0]], (6, 1))])
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    _run(_write_subject(tmp_path / "a", noisy, bvals, bvecs), tmp_path / "a")
    settings = _run(_write_subject(tmp_path / "b", extra, extra_bvals, extra_bvecs), tmp_path / "b")
    assert settings["n_volumes"] == 288 and settings["n_volumes_in_file"] == 294
    for metric in METRICS:
        a, b = (np.asanyarray(nib.load(_outputs(tmp_path / d)[0][metric]).dataobj) for d in "ab")
        np.testing.assert_array_equal(a, b)


def _truncate(paths, bvals, bvecs):
    raw = paths["dwi.nii.gz"].read_bytes()
    paths["dwi.nii.gz"].write_bytes(raw[: len(raw) // 2])
    return "dwi.nii.gz"


def _nan(paths, bvals, bvecs, value=np.nan):
    img = nib.load(paths["dwi.nii.gz"])
    data = img.get_fdata(dtype=np.float32)
    data[2, 2, 1, 150] = value
    nib.save(nib.Nifti1Image(data, img.affine), paths["dwi.nii.gz"])
    return "dwi.nii.gz"


def _inf(paths, bvals, bvecs):
    return _nan(paths, bvals, bvecs, value=np.inf)


def _short_bval(paths, bvals, bvecs):
    np.savetxt(paths["dwi.bval"], bvals[None, :-1], fmt="%g")
    return "dwi.bval"


def _short_bvec(paths, bvals, bvecs):
    np.savetxt(paths["dwi.bvec"], bvecs[:-1].T, fmt="%.6f")
    return "dwi.bvec"


def _non_unit_bvec(paths, bvals, bvecs):
    scaled = bvecs.copy()
    scaled[40] *= 1.1
    np.savetxt(paths["dwi.bvec"], scaled.T, fmt="%.6f")
    return "dwi.bvec"


def _bval_in_ms_per_um2(paths, bvals, bvecs, factor=1e-3):
    np.savetxt(paths["dwi.bval"], bvals[None] * factor, fmt="%g")
    return "dwi.bval"


def _bval_in_s_per_m2(paths, bvals, bvecs):
    return _bval_in_ms_per_um2(paths, bvals, bvecs, factor=1e6)


def _missing_shell(paths, bvals, bvecs):
    np.savetxt(paths["dwi.bval"], np.where(bvals > 2500, 2500.0, bvals)[None], fmt="%g")
    return "dwi.bval"


def _empty_mask(paths, bvals, bvecs):
    nib.save(nib.Nifti1Image(np.zeros(GRID, np.uint8), np.eye(4)), paths["mask.nii.gz"])
    return "mask.nii.gz"


def _wrong_mask_shape(paths, bvals, bvecs):
    nib.save(nib.Nifti1Image(np.ones((5, 6, 5), np.uint8), np.eye(4)), paths["mask.nii.gz"])
    return "mask.nii.gz"


def _missing_dwi(paths, bvals, bvecs):
    paths["dwi.nii.gz"].unlink()
    return "dwi.nii.gz"


BREAKERS = [
    _truncate,
    _nan,
    _inf,
    _short_bval,
    _short_bvec,
    _non_unit_bvec,
    _bval_in_ms_per_um2,
    _bval_in_s_per_m2,
    _missing_shell,
    _empty_mask,
    _wrong_mask_shape,
    _missing_dwi,
]


@pytest.mark.parametrize("breaker", BREAKERS, ids=[b.__name__.strip("_") for b in BREAKERS])
def test_bad_input_is_one_line_error_naming_the_file(tmp_path, scheme, noisy, breaker):
    bvals, bvecs, _ = scheme
    paths = _write_subject(tmp_path, noisy, bvals, bvecs)
    name = breaker(paths, bvals, bvecs)
    with pytest.raises(InputError) as info:
        _run(paths, tmp_path)
    message = str(info.value)
    assert str(paths[name]) in message and "\n" not in message
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


@pytest.mark.parametrize(("breaker", "says"), [(_bval_in_ms_per_um2, "ms/um^2"), (_bval_in_s_per_m2, "s/m^2"),
                                               (_missing_shell, "no volume within 50 of shell(s) [3000]")])  # fmt: skip
def test_wrong_units_and_missing_shells_say_what_was_found(tmp_path, scheme, noisy, breaker, says):
    bvals, bvecs, _ = scheme
    paths = _write_subject(tmp_path, noisy, bvals, bvecs)
    breaker(paths, bvals, bvecs)
    with pytest.raises(InputError, match=re.escape(says)) as info:
        _run(paths, tmp_path)
    assert "expected s/mm^2 near dki.bvals [0, 1000, 2000, 3000]" in str(info.value)


def test_too_few_shells_is_an_error_naming_the_bval_file(tmp_path, scheme, noisy):
    bvals, bvecs, _ = scheme
    paths = _write_subject(tmp_path, noisy, bvals, bvecs)
    with pytest.raises(InputError, match=str(paths["dwi.bval"])):
        _run(paths, tmp_path, {**CFG, "bvals": [0, 1000]})
    assert not (tmp_path / "out").exists()


def test_truncated_file_really_is_truncated(tmp_path, scheme, noisy):
    """Guard for the truncation case: gzip itself refuses the file, so the InputError is not about something else."""
    bvals, bvecs, _ = scheme
    paths = _write_subject(tmp_path, noisy, bvals, bvecs)
    _truncate(paths, bvals, bvecs)
    with pytest.raises(EOFError), gzip.open(paths["dwi.nii.gz"]) as f:
        f.read()


def test_reused_chunk_buffers_change_no_bit(scheme, noisy):
    """fit_signals reuses one set of work arrays for all chunks (the last one partial); each chunk fitted with fresh
    arrays gives the same bits."""
    design = dki.make_design(*scheme[:2])
    chunked = dki.fit_signals(noisy.astype(np.float32), design, chunk_voxels=64)
    for start in range(0, len(noisy), 64):
        fresh = dki.fit_coefficients(noisy[start : start + 64].astype(np.float32), design)
        params = dki.coefficients_to_params(fresh, design.min_diffusivity)
        for metric, values in dki.params_to_metrics(params, 0.0, 3.0).items():
            assert np.array_equal(chunked[metric][start : start + 64], values, equal_nan=True), (metric, start)
