"""dmriscope.harmonise: the brain-size harmonisation of the DWI (kernel, noise gain, noise estimate, equalisation)."""

from __future__ import annotations

import math

import nibabel as nib
import numpy as np
import pytest
from dipy.core.gradients import gradient_table
from dipy.sims.voxel import multi_tensor_dki
from scipy.ndimage import gaussian_filter

from dmriscope import dki, harmonise
from dmriscope.cohort.gradients import load_hcp_scheme, write_fsl_gradients
from dmriscope.config import METRICS
from dmriscope.io import InputError

CFG = {"psf_mm": 3.0, "min_scale": 0.8}
WHITE = {**CFG, "noise": "white"}
ZOOMS = (4.0, 4.0, 4.0)


@pytest.mark.parametrize("scale", [0.8, 1.0, 1.2])
def test_kernel_plus_voxel_box_gives_the_target_psf(scale):
    sigma = harmonise.kernel_sd_voxels(scale, 3.0, ZOOMS)
    for s, z in zip(sigma, ZOOMS):
        assert math.hypot(s * z, z / math.sqrt(12)) == pytest.approx(3.0 * scale)


def test_kernel_below_the_voxel_psf_is_refused():
    with pytest.raises(ValueError, match="psf_mm"):
        harmonise.kernel_sd_voxels(0.8, 1.0, ZOOMS)


@pytest.mark.parametrize("sigma", [(0.5, 0.5, 0.5), (0.8, 0.8, 0.8), (1.5, 1.0, 0.6)])
def test_noise_gain_is_the_variance_of_filtered_white_noise(sigma):
    noise = np.random.default_rng(0).standard_normal((96, 96, 96))
    filtered = gaussian_filter(noise, sigma, mode="constant")[16:-16, 16:-16, 16:-16]
    assert np.var(filtered) == pytest.approx(harmonise.noise_gain(sigma), rel=0.03)


def test_b0_noise_sd_recovers_the_noise_of_repeated_b0s():
    rng = np.random.default_rng(1)
    bvals = np.array([0] * 18 + [1000] * 30, dtype=float)
    signals = 900.0 + 30.0 * rng.standard_normal((5000, bvals.size))
    signals[:, bvals > 0] = 400.0  # diffusion-weighted volumes carry no information on the noise
    assert harmonise.b0_noise_sd(signals, bvals) == pytest.approx(30.0, rel=0.02)
    with pytest.raises(InputError, match="b=0"):
        harmonise.b0_noise_sd(signals, np.full(bvals.size, 1000.0))


def _cube_brain(shape=(40, 40, 40)) -> np.ndarray:
    brain = np.zeros(shape, dtype=bool)
    brain[4:-4, 4:-4, 4:-4] = True
    return brain


def _interior_noise_sd(scale: float, noise_sd: float) -> float:
    """Noise SD of a harmonised flat phantom's diffusion-weighted volumes, away from the brain's edge."""
    rng = np.random.default_rng(2)
    brain = _cube_brain()
    bvals = np.array([0.0] * 18 + [1000.0] * 30)
    signals = np.where(bvals > 0, 400.0, 900.0).astype(np.float32) + noise_sd * rng.standard_normal(
        (int(brain.sum()), bvals.size), dtype=np.float32
    )
    harmonise.harmonise_signals(signals, brain, ZOOMS, bvals, scale, WHITE, f"sub-{scale}")
    volumes = np.zeros(brain.shape + (bvals.size,), dtype=np.float32)
    volumes[brain] = signals
    interior = volumes[10:-10, 10:-10, 10:-10, 18:]
    assert interior.mean() == pytest.approx(400.0, rel=0.01)  # a flat signal stays flat
    return float(interior.std())


def test_white_noise_equalises_the_variance_to_a_brain_at_min_scale():
    expected = 20.0 * math.sqrt(harmonise.noise_gain(harmonise.kernel_sd_voxels(0.8, 3.0, ZOOMS)))
    small, large = _interior_noise_sd(0.85, 20.0), _interior_noise_sd(1.2, 20.0)
    assert small == pytest.approx(expected, rel=0.05)
    assert large == pytest.approx(expected, rel=0.05)
    # without the added noise the larger brain's wider kernel would leave it far less noisy
    unequalised = 20.0 * math.sqrt(harmonise.noise_gain(harmonise.kernel_sd_voxels(1.2, 3.0, ZOOMS)))
    assert unequalised < 0.7 * expected


def _noise_field(scale: float, cfg: dict, shape=(56, 56, 56)) -> np.ndarray:
    """The harmonised noise of a flat phantom (36 diffusion-weighted volumes, noise SD 20), away from the edge."""
    rng = np.random.default_rng(3)
    brain = np.zeros(shape, dtype=bool)
    brain[4:-4, 4:-4, 4:-4] = True
    bvals = np.array([0.0] * 12 + [1000.0] * 36)
    signals = np.where(bvals > 0, 400.0, 900.0) + 20.0 * rng.standard_normal((int(brain.sum()), bvals.size))
    signals = signals.astype(np.float32)
    harmonise.harmonise_signals(signals, brain, ZOOMS, bvals, scale, cfg, f"sub-{scale}")
    volumes = np.zeros(brain.shape + (bvals.size,), dtype=np.float32)
    volumes[brain] = signals
    return volumes[10:-10, 10:-10, 10:-10, 12:] - 400.0


def _covariance(field: np.ndarray, lag: int) -> float:
    """Covariance of the field with itself ``lag`` voxels along the first axis."""
    return float(np.mean(field[lag:] * field[: field.shape[0] - lag]))


def test_coloured_noise_is_one_field_in_template_units():
    """A brain at scale 1.8 has voxels half as large in template units as one at 0.9: its lag 2 is the smaller
    brain's lag 1. Coloured noise gives both the same variance and covariance at equal template lags; white noise
    (variance only) leaves the larger brain's noise more correlated, as the kernel is wider in template units."""
    small, large = _noise_field(0.9, CFG), _noise_field(1.8, CFG)
    for lag in (0, 1):
        assert _covariance(large, 2 * lag) == pytest.approx(_covariance(small, lag), rel=0.04)
    small, large = _noise_field(0.9, WHITE), _noise_field(1.8, WHITE)
    correlation = [_covariance(f, lag) / _covariance(f, 0) for f, lag in ((small, 1), (large, 2))]
    assert correlation[1] > 1.1 * correlation[0]


def test_coloured_noise_has_the_variance_of_its_spectrum():
    amplitude = harmonise.coloured_amplitude((40, 36, 30), (0.7, 0.7, 0.9), (0.6, 0.5, 0.8), 2.0)
    fields = harmonise.coloured_noise(np.random.default_rng(4), amplitude, (40, 36, 30), 8)
    assert fields.shape == (40, 36, 30, 8)
    assert np.var(fields) == pytest.approx(harmonise._mean_power(amplitude, 30), rel=0.02)


def test_noiseless_signals_get_no_noise():
    brain = _cube_brain((20, 20, 20))
    bvals = np.array([0.0] * 4 + [1000.0] * 4)
    signals = np.tile(np.where(bvals > 0, 400.0, 900.0).astype(np.float32), (int(brain.sum()), 1))
    done = harmonise.harmonise_signals(signals, brain, ZOOMS, bvals, 1.1, CFG, "sub-a")
    assert done["added_noise_sd"] == 0.0
    np.testing.assert_allclose(signals[:, 4:], 400.0, rtol=1e-5)


def test_a_brain_below_min_scale_or_an_unknown_noise_mode_is_an_error():
    brain = _cube_brain((20, 20, 20))
    signals = np.ones((int(brain.sum()), 4), dtype=np.float32)
    with pytest.raises(InputError, match=r"sub-small: brain scale 0\.750 is below dki\.harmonise\.min_scale"):
        harmonise.harmonise_signals(signals, brain, ZOOMS, np.zeros(4), 0.75, CFG, "sub-small")
    with pytest.raises(InputError, match="dki.harmonise.noise"):
        harmonise.harmonise_signals(signals, brain, ZOOMS, np.zeros(4), 1.0, {**CFG, "noise": "pink"}, "sub-a")


def _flat_subject(folder, noise_sd: float):
    """A 12^3 subject at 2 mm whose brain (an 8^3 cube) holds one white-matter-like DKI signal (Rician noise of
    ``noise_sd`` at S0 1000), and a template FA whose brain is 1.2x the subject's volume (scale ~0.94)."""
    bvals, bvecs = load_hcp_scheme()
    mevals = np.array([[1.8e-3, 0.3e-3, 0.3e-3], [1.2e-3, 0.7e-3, 0.7e-3]])
    clean, _, _ = multi_tensor_dki(gradient_table(bvals, bvecs=bvecs), mevals, S0=1000.0, angles=[(90, 0)] * 2,
                                   fractions=[50, 50], snr=None)  # fmt: skip
    brain = np.zeros((12, 12, 12), bool)
    brain[2:10, 2:10, 2:10] = True
    rng = np.random.default_rng(3)
    data = np.zeros(brain.shape + (bvals.size,), np.float32)
    data[brain] = np.hypot(clean + noise_sd * rng.standard_normal((brain.sum(), bvals.size)),
                           noise_sd * rng.standard_normal((brain.sum(), bvals.size)))  # fmt: skip
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    paths = {k: folder / k for k in ("dwi.nii.gz", "dwi.bval", "dwi.bvec", "mask.nii.gz", "template.nii.gz")}
    nib.save(nib.Nifti1Image(data, affine), paths["dwi.nii.gz"])
    nib.save(nib.Nifti1Image(brain.astype(np.uint8), affine), paths["mask.nii.gz"])
    template = np.zeros((20, 20, 20), np.float32)
    template.flat[: int(round(1.2 * brain.sum() * 8))] = 0.5  # 1 mm template voxels
    nib.save(nib.Nifti1Image(template, np.eye(4)), paths["template.nii.gz"])
    write_fsl_gradients(bvals, bvecs, paths["dwi.bval"], paths["dwi.bvec"])
    return paths, brain


def _fit(paths, folder, harmonise_cfg, template=True):
    cfg = {"fit_method": "WLS", "bvals": [0, 1000, 2000, 3000], "min_kurtosis": 0.0, "max_kurtosis": 3.0,
           "chunk_voxels": 64, "harmonise": harmonise_cfg}  # fmt: skip
    folder.mkdir()
    maps = {m: folder / f"{m}.nii.gz" for m in METRICS}
    settings = dki.fit_dki_files(paths["dwi.nii.gz"], paths["dwi.bval"], paths["dwi.bvec"], paths["mask.nii.gz"],
                                 maps, folder / "fit.json", cfg, paths["template.nii.gz"] if template else None,
                                 "sub-flat")  # fmt: skip
    return settings, {m: np.asanyarray(nib.load(p).dataobj) for m, p in maps.items()}


def test_fit_dki_files_harmonises_only_when_asked(tmp_path):
    paths, brain = _flat_subject(tmp_path, 0.0)
    plain, plain_maps = _fit(paths, tmp_path / "off", {"psf_mm": None, "min_scale": 0.8})
    done, maps = _fit(paths, tmp_path / "on", {"psf_mm": 3.0, "min_scale": 0.8})
    assert "harmonise" not in plain
    assert done["harmonise"]["scale"] == pytest.approx((1 / 1.2) ** (1 / 3), rel=1e-4)  # template voxels rounded
    assert done["harmonise"]["added_noise_sd"] == 0.0  # noiseless b0s: nothing to equalise
    for metric in plain_maps:  # a flat brain stays flat under the in-brain blur: the maps do not change
        np.testing.assert_allclose(maps[metric][brain], plain_maps[metric][brain], rtol=1e-4)
    with pytest.raises(ValueError, match="no template FA"):
        _fit(paths, tmp_path / "none", {"psf_mm": 3.0, "min_scale": 0.8}, template=False)


def test_the_b0_noise_estimate_and_the_added_noise_reach_fit_json(tmp_path):
    paths, brain = _flat_subject(tmp_path, 25.0)
    done, maps = _fit(paths, tmp_path / "on", {"psf_mm": 3.0, "min_scale": 0.8})
    assert done["harmonise"]["noise_sd"] == pytest.approx(25.0, rel=0.1)
    assert done["harmonise"]["added_noise_sd"] > 0


def test_without_the_voxel_box_the_kernel_alone_is_the_template_psf():
    for scale in (0.9, 1.2):
        sigma = harmonise.kernel_sd_voxels(scale, 3.0, ZOOMS, voxel_psf=False)
        assert [s * z / scale for s, z in zip(sigma, ZOOMS)] == pytest.approx([3.0] * 3)
