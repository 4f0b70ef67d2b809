"""The smoothness estimate against nilearn's Gaussian smoothing, and the equalisation as a size control: a reader
of spatial roughness separates maps of two resolutions before it and not after."""

import nibabel as nib
import numpy as np
import pytest
from nilearn.image import smooth_img
from scipy.ndimage import gaussian_filter
from sklearn.metrics import roc_auc_score

from dmriscope.io import InputError
from dmriscope.smoothness import (
    FWHM_PER_SIGMA,
    TOLERANCE,
    blur_to_fwhm,
    equalise_store,
    estimate_fwhm,
    masked_blur,
    resolve_target,
)

SHAPE = (30, 36, 36)
VOXEL_MM = 2.0


def ellipsoid(shape=SHAPE) -> np.ndarray:
    centre = (np.asarray(shape) - 1) / 2
    grid = np.indices(shape).astype(float)
    return (((grid - centre[:, None, None, None]) / (0.45 * np.asarray(shape))[:, None, None, None]) ** 2).sum(0) < 1


def nilearn_field(fwhm_voxels: float, rng: np.random.Generator) -> np.ndarray:
    """White noise smoothed by nilearn to ``fwhm_voxels`` (given to it in mm, on 2 mm voxels)."""
    noise = nib.Nifti1Image(rng.standard_normal(SHAPE), np.diag([VOXEL_MM] * 3 + [1.0]))
    return np.asarray(smooth_img(noise, fwhm=fwhm_voxels * VOXEL_MM).get_fdata())


def roughness(volume: np.ndarray, mask: np.ndarray) -> float:
    """What a texture reader sees: the mean squared first difference along axis 0 inside the mask."""
    both = mask[1:] & mask[:-1]
    return float(np.mean(np.diff(volume, axis=0)[both] ** 2))


@pytest.mark.parametrize("fwhm", [2.0, 3.0, 4.0])
def test_estimate_recovers_nilearn_smoothing(fwhm):
    rng = np.random.default_rng(int(fwhm * 10))
    mask = ellipsoid()
    estimates = [estimate_fwhm(nilearn_field(fwhm, rng), 0.0, mask) for _ in range(3)]
    assert np.mean(estimates) == pytest.approx(fwhm, rel=0.05)


def test_shared_anatomy_drops_out_of_the_estimate():
    """A smooth structure common to every map (the mean) does not change the estimate of a map's own FWHM."""
    rng = np.random.default_rng(1)
    mask = ellipsoid()
    anatomy = 20 * gaussian_filter(rng.standard_normal(SHAPE), 6.0) + np.indices(SHAPE)[0]
    field = nilearn_field(2.0, rng)
    assert estimate_fwhm(anatomy + field, anatomy, mask) == pytest.approx(estimate_fwhm(field, 0.0, mask), rel=1e-9)
    assert estimate_fwhm(anatomy + field, 0.0, mask) > 3.0  # without the mean the anatomy dominates


def test_masked_blur_does_not_bleed_the_outside_in():
    mask = ellipsoid()
    constant = np.where(mask, 7.0, 0.0)
    np.testing.assert_allclose(masked_blur(constant, mask, 2.0)[mask], 7.0, rtol=1e-12)
    plain = gaussian_filter(constant, 2.0, mode="constant")
    assert plain[mask].min() < 6.0  # what an unnormalised blur does at the brain's edge


def test_blur_reaches_the_target_and_leaves_a_smoother_map_alone():
    rng = np.random.default_rng(2)
    mask = ellipsoid()
    for fwhm in (1.5, 2.5):
        out, before, after = blur_to_fwhm(nilearn_field(fwhm, rng) + 3.0, np.full(SHAPE, 3.0), mask, 3.5)
        assert before == pytest.approx(fwhm, rel=0.08)
        assert 3.5 * (1 - TOLERANCE) <= after <= 3.5 * 1.05
        assert estimate_fwhm(out, 3.0, mask) == pytest.approx(after, rel=1e-9)
    smooth = nilearn_field(4.0, rng)
    out, before, after = blur_to_fwhm(smooth, 0.0, mask, 3.5)
    np.testing.assert_array_equal(out, smooth)
    assert before == after


def two_resolution_store(rng, shift: float, n: int = 40) -> tuple[np.ndarray, np.ndarray]:
    """n maps: a shared anatomy plus the same kind of texture seen through a point-spread function of FWHM 2 voxels
    (label 0) or 2 + shift (label 1) - the same mean in every voxel, only the resolution differs."""
    anatomy = 5 + gaussian_filter(rng.standard_normal(SHAPE), 5.0) * 30
    label = np.arange(n) % 2
    store = np.empty((n, *SHAPE), np.float32)
    for row, y in enumerate(label):
        field = gaussian_filter(rng.standard_normal(SHAPE), (2.0 + shift * y) / FWHM_PER_SIGMA)
        store[row] = anatomy + 3 * field
    return store, label


@pytest.mark.parametrize("shift", [0.6, 0.0])
def test_equalisation_removes_a_resolution_difference_a_reader_sees(shift):
    rng = np.random.default_rng(3)
    mask = ellipsoid()
    store, label = two_resolution_store(rng, shift)
    before = roc_auc_score(label, [-roughness(v, mask) for v in store])
    table = equalise_store(store, [f"s{i}" for i in range(len(store))], mask, "auto")
    after = roc_auc_score(label, [-roughness(v, mask) for v in store])
    if shift:
        assert before == 1.0  # rougher maps are the sharper group, every time
        assert table.loc[label == 1, "fwhm"].mean() > table.loc[label == 0, "fwhm"].mean() * 1.2
    else:
        assert 0.25 < before < 0.75
    assert 0.25 < after < 0.75  # n = 40: a chance AUC lies in (0.25, 0.75) with probability > 0.99
    goal = table["fwhm"].max()
    assert (table["fwhm_after"] >= goal * (1 - TOLERANCE)).all()
    assert (table["fwhm_after"] <= goal * 1.05).all()


def test_no_target_estimates_and_leaves_the_store_untouched():
    store, _ = two_resolution_store(np.random.default_rng(4), 0.6, n=6)
    original = store.copy()
    table = equalise_store(store, list("abcdef"), ellipsoid(), None)
    np.testing.assert_array_equal(store, original)
    assert table["subject"].tolist() == list("abcdef")
    np.testing.assert_array_equal(table["fwhm"], table["fwhm_after"])


def test_bad_targets_name_the_config_key():
    with pytest.raises(InputError, match="tensors.smooth_to_fwhm"):
        resolve_target("sharp", np.array([2.0]))
    with pytest.raises(InputError, match="tensors.smooth_to_fwhm"):
        resolve_target(-1.0, np.array([2.0]))
    with pytest.raises(InputError, match="tensors.smooth_to_fwhm"):
        resolve_target("auto", np.array([np.inf, np.nan]))
    assert resolve_target("auto", np.array([2.0, 3.5, np.inf])) == 3.5
    assert resolve_target(2.5, np.array([9.0])) == 2.5


def test_table1c_reports_each_groups_smoothness_per_set(tmp_path):
    import pandas as pd

    from dmriscope.label import SEX
    from dmriscope.render.analysis_tables import read_smoothness, smoothness_table

    subjects = [f"0{i}" for i in range(8)]
    split = pd.DataFrame({
        "subject": subjects,
        "sex": list("MFMFMFMF"),
        "age_bin": ["22-25"] * 8,
        "set": ["train"] * 4 + ["val"] * 2 + ["test"] * 2,
    })  # fmt: skip
    fwhm = [2.0, 2.5, 2.0, 2.5, 1.0, 2.0, 3.0, 3.0]
    pd.DataFrame({"subject": subjects, "group": split["sex"], "fwhm": fwhm, "fwhm_after": 3.0}).to_csv(
        tmp_path / "FA_smoothness.tsv", sep="\t", index=False
    )
    table = read_smoothness(str(tmp_path / "FA_smoothness.tsv"))
    assert table["subject"].iloc[0] == "00"  # IDs stay strings
    out = smoothness_table({"FA": table}, split, SEX).set_index("set")
    assert list(out.index) == ["train", "val", "test", "all"]
    assert out.loc["train", "male / female"] == 0.8
    assert out.loc["val", "male / female"] == 0.5
    assert out.loc["all", "male / female"] == round(2.0 / 2.5, 3)
    assert out.loc["all", "male FWHM"] == "2.000 ± 0.816"
    assert (out["male / female after blur"] == 1.0).all()
    (tmp_path / "bad.tsv").write_text("subject\tfwhm\n01\t2\n")
    with pytest.raises(InputError, match="bad.tsv"):
        read_smoothness(str(tmp_path / "bad.tsv"))
