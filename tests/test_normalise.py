"""Normalisation statistics and their application (dmriscope.normalise)."""

import json

import numpy as np
import pytest

from dmriscope.io import InputError
from dmriscope.normalise import Normaliser, RunningMoments, voxel_statistics, write_norm


def test_per_voxel_moments_equal_numpy_over_chunks():
    rng = np.random.default_rng(0)
    data = rng.normal(3e-3, 4e-4, size=(11, 4, 5, 6))
    moments = RunningMoments(axis=0)
    for chunk in (data[:1], data[1:5], data[5:6], data[6:]):
        moments.update(chunk)
    assert moments.n == 11
    np.testing.assert_allclose(moments.mean, data.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(moments.std, data.std(axis=0), rtol=1e-10)


def test_voxel_statistics_floor_and_outside_mask():
    rng = np.random.default_rng(1)
    data = rng.normal(0, 1, size=(20, 10, 10, 1)) * np.linspace(0, 2, 100).reshape(10, 10, 1)
    mask = np.ones((10, 10, 1), dtype=bool)
    mask[0, :3] = False
    moments = RunningMoments(axis=0)
    moments.update(data)
    voxels, floor = voxel_statistics(moments, mask)
    assert floor == pytest.approx(np.percentile(data.std(axis=0)[mask], 5))
    assert voxels.shape == (2, 10, 10, 1) and voxels.dtype == np.float32
    assert voxels[1][mask].min() == pytest.approx(floor, rel=1e-6)  # the near-constant voxels are raised
    assert (voxels[0][~mask] == 0).all() and (voxels[1][~mask] == 1).all()


def test_voxel_statistics_rejects_constant_training_maps():
    moments = RunningMoments(axis=0)
    moments.update(np.ones((3, 2, 2, 2)))
    with pytest.raises(InputError, match="do not vary"):
        voxel_statistics(moments, np.ones((2, 2, 2), dtype=bool))


def test_voxel_normaliser_by_hand_and_on_a_slab():
    mean = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    std = np.full((2, 3, 4), 2.0, dtype=np.float32)
    mask = np.ones((2, 3, 4), dtype=bool)
    mask[1, 2, 3] = False
    norm = Normaliser(mean=mean, std=std, clip=1.0, mode="voxel")
    x = mean + np.float32(1.0)
    x[0, 0, 0] += 10.0  # z = 5.5 -> clipped to 1
    out = norm.apply(x, mask)
    expected = np.where(mask, 0.5, 0.0).astype(np.float32)
    expected[0, 0, 0] = 1.0
    np.testing.assert_array_equal(out, expected)
    part = (slice(1, 2),)
    np.testing.assert_array_equal(norm.bind(mask)(x[part], part), out[part])


def test_files_round_trip_and_checkpoint_state(tmp_path):
    voxels = np.stack([np.zeros((2, 2, 2)), np.full((2, 2, 2), 3.0)]).astype(np.float32)
    stats = {"mode": "voxel", "clip": 4.0, "mean": 1.0, "std": 2.0, "std_floor": 0.5}
    write_norm(stats, voxels, tmp_path / "MD_norm.json", tmp_path / "MD_norm.npy")
    norm = Normaliser.from_files(tmp_path / "MD_norm.json", tmp_path / "MD_norm.npy")
    assert norm.mode == "voxel" and norm.clip == 4.0
    np.testing.assert_array_equal(norm.std, voxels[1])
    again = Normaliser.from_state(norm.state())
    x = np.full((2, 2, 2), 6.0, dtype=np.float32)
    mask = np.ones((2, 2, 2), dtype=bool)
    np.testing.assert_array_equal(again.apply(x, mask), norm.apply(x, mask))
    assert (norm.apply(x, mask) == 2.0).all()
    stats["mode"] = "global"
    write_norm(stats, voxels, tmp_path / "FA_norm.json", tmp_path / "FA_norm.npy")
    assert (Normaliser.from_files(tmp_path / "FA_norm.json").apply(x, mask) == 2.5).all()


def test_bad_norm_files_name_the_file(tmp_path):
    (tmp_path / "MK_norm.json").write_text(json.dumps({"mode": "voxel", "mean": 1.0, "std": 1.0}))
    with pytest.raises(InputError, match="MK_norm.npy"):
        Normaliser.from_files(tmp_path / "MK_norm.json", tmp_path / "MK_norm.npy")  # missing
    with pytest.raises(InputError, match="MK_norm.json.*norm_voxels"):  # passed by the rule, never guessed
        Normaliser.from_files(tmp_path / "MK_norm.json")
    (tmp_path / "MK_norm.json").write_text(json.dumps({"mode": "robust", "mean": 1.0, "std": 1.0}))
    with pytest.raises(InputError, match="MK_norm.json.*robust"):
        Normaliser.from_files(tmp_path / "MK_norm.json")
    (tmp_path / "MK_norm.json").write_text(json.dumps({"mode": "global", "mean": 1.0, "std": 0.0}))
    with pytest.raises(InputError, match="MK_norm.json.*positive"):
        Normaliser.from_files(tmp_path / "MK_norm.json")
