"""Partial volume in the phantom (`dmriscope.cohort.partial_volume`): a voxel as the mixture of its sub-points."""

from __future__ import annotations

import numpy as np
import pytest
import yaml

from dmriscope.cohort import microstructure as ms
from dmriscope.cohort import partial_volume as pv
from dmriscope.cohort import phantom as ph
from dmriscope.cohort import synthetic as sy
from dmriscope.config import load_config

SEED = 11


@pytest.fixture(scope="module")
def ci(project_root) -> dict:
    return load_config(yaml.safe_load((project_root / "configs/ci.yaml").read_text()))


@pytest.fixture(scope="module")
def subjects(ci) -> dict[int, dict]:
    """The same ci subject read at voxel centres (1) and integrated over 2 x 2 x 2 sub-points (2)."""
    syn = ci["synthetic"]
    shape = tuple(syn["template_shape"])
    template = ph.build_phantom(shape, syn["voxel_mm"])
    texture = ph.texture_field(shape, syn["voxel_mm"], sy.TEXTURE_SMOOTHNESS_MM, SEED)
    return {
        k: sy.subject_anatomy("s1", "M", 30.0, template, texture, {**syn, "partial_volume_samples": k}, SEED, ci["dki"])
        for k in (1, 2)
    }


def test_subvoxel_offsets_tile_the_voxel():
    assert np.array_equal(pv.subvoxel_offsets(1, 4.0), np.zeros((1, 3)))
    offsets = pv.subvoxel_offsets(2, 4.0)
    assert offsets.shape == (8, 3) and np.allclose(offsets.mean(axis=0), 0)
    assert set(np.unique(offsets)) == {-1.0, 1.0}  # the centres of the 2 mm sub-cubes of a 4 mm voxel
    assert len(np.unique(pv.subvoxel_offsets(3, 3.0), axis=0)) == 27
    with pytest.raises(ValueError, match="partial_volume_samples"):
        pv.subvoxel_offsets(0, 4.0)


def test_sub_points_follow_the_local_affine_map():
    jacobian = np.array([[[2.0, 0, 0], [0, 1, 0], [0, 0.5, 1]]])
    points = pv.sub_points(np.array([[10.0, 0, 0]]), jacobian, np.array([[1.0, 1, 0]]))
    assert np.allclose(points, [[[12.0, 1, 0.5]]])


def _directions(n: int, rng: np.random.Generator) -> np.ndarray:
    e = rng.normal(size=(n, 3))
    return e / np.linalg.norm(e, axis=-1, keepdims=True)


def test_a_voxel_of_identical_sub_points_is_that_point():
    rng = np.random.default_rng(0)
    tissue = np.array([ms.WM, ms.GM, ms.CSF])
    f, e = rng.uniform(0.2, 0.8, 3), _directions(3, rng)
    D, W, s0 = ms.voxel_tensors(tissue, f, e)
    Dv, Wv, s0v = pv.voxel_mixture(
        np.repeat(tissue[:, None], 8, 1), np.repeat(f[:, None], 8, 1), np.repeat(e[:, None], 8, 1)
    )
    np.testing.assert_allclose(Dv, D, rtol=1e-12, atol=1e-18)
    np.testing.assert_allclose(Wv, W, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(s0v, s0)


def test_mixed_voxels_weight_their_sub_points_by_signal():
    """One voxel of WM + CSF sub-points and one of WM + background: D is the S0-weighted mean of the sub-points' D
    (a Gaussian mixture's first cumulant), S0 the mean S0 (background contributes nothing), and W the kurtosis of
    the pooled compartments (`mixture_tensors`, tested against dipy's multi_tensor_dki)."""
    rng = np.random.default_rng(1)
    e, f = _directions(2, rng), np.array([0.6, 0.6])
    tissue = np.array([[ms.WM, ms.CSF], [ms.WM, ms.BACKGROUND]])
    D, W, s0 = pv.voxel_mixture(tissue, np.vstack([f, f]), np.stack([e, e]))
    parts = {code: ms.voxel_tensors(np.array([code]), f[:1], e[i : i + 1]) for i, code in enumerate((ms.WM, ms.CSF))}
    s_wm, s_csf = parts[ms.WM][2][0], parts[ms.CSF][2][0]
    np.testing.assert_allclose(s0, [(s_wm + s_csf) / 2, s_wm / 2])
    expected = (s_wm * parts[ms.WM][0][0] + s_csf * parts[ms.CSF][0][0]) / (s_wm + s_csf)
    np.testing.assert_allclose(D[0], expected, rtol=1e-12)
    np.testing.assert_allclose(D[1], parts[ms.WM][0][0], rtol=1e-12)
    np.testing.assert_allclose(W[1], parts[ms.WM][1][0], rtol=1e-9, atol=1e-12)
    fractions, tensors = ms.compartments(f, np.array([0.0, 1.0]), np.array([ms.D_FREE] * 2), e)
    pooled = np.concatenate([fractions[0] * s_wm, fractions[1] * s_csf])[None] / (s_wm + s_csf)
    _, W_pooled = ms.mixture_tensors(pooled, tensors.reshape(1, 6, 3, 3))
    np.testing.assert_allclose(W[0], W_pooled[0], rtol=1e-9)
    assert W[0].max() > W[1].max()  # mixing free water into tissue raises the apparent kurtosis
    with pytest.raises(ValueError, match="no brain sub-point"):
        pv.voxel_mixture(np.zeros((1, 2), int), np.zeros((1, 2)), np.stack([e]))


def test_integrating_blurs_borders_that_point_sampling_steps(subjects):
    """At voxel centres every brain voxel's S0 is one tissue's (WM 1000, GM 1100, CSF 2000); integrated, border
    voxels take values in between, while the brain's volume stays the same."""
    tissue_s0 = {ms.S0_WM, *(t.s0 for t in ms.TISSUES.values())}
    point, mixed = subjects[1], subjects[2]
    assert set(np.unique(point["s0"])) <= tissue_s0
    between = ~np.isin(mixed["s0"], list(tissue_s0))
    assert 0.1 < between.mean() < 0.9, between.mean()
    assert mixed["s0"].min() >= 0.5 * min(tissue_s0) - 1e-9  # a brain voxel is at least half brain
    assert abs(mixed["mask"].sum() / point["mask"].sum() - 1) < 0.08  # ci: 6 mm voxels, half-brain voxels kept
    assert mixed["params"]["brain_voxels"] == mixed["mask"].sum()
    for metric in ("FA", "MD", "MK"):
        assert np.isfinite(mixed["truth"][metric][mixed["mask"]]).all()
    # the same microstructure underneath: white-matter FA agrees away from borders
    core = point["mask"] & mixed["mask"] & (point["labels"] > 0) & (mixed["labels"] > 0)
    ratio = np.median(mixed["truth"]["FA"][core]) / np.median(point["truth"]["FA"][core])
    assert 0.85 < ratio <= 1.0 + 1e-6, ratio
