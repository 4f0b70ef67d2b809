"""benchmarks/size_controls.py --residue: a second-order size effect (rougher maps, same means) that the pooled
regression cannot remove is read by the within-region SD reader and missed by the voxel reader, and nothing is
read when there is no such effect."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import load_benchmark
from sklearn.metrics import roc_auc_score


@pytest.fixture(scope="module")
def size_controls():
    return load_benchmark("size_controls")


def maps(rough: float, seed: int = 0, n: int = 240, per_region: int = 6) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(subjects, voxels) features, region label per voxel, class label: class 1's voxels have ``rough`` times the
    within-region SD, every region mean and voxel mean the same in both classes."""
    rng = np.random.default_rng(seed)
    label = np.arange(n) % 2
    regions = np.repeat(np.arange(1, 49), per_region)
    sd = np.where(label == 1, rough, 1.0)[:, None]
    return rng.normal(0.0, 1.0, (n, regions.size)) * sd, regions, label


@pytest.mark.parametrize(("rough", "separates"), [(1.15, True), (1.0, False)])
def test_region_sd_reads_roughness_the_voxel_reader_cannot(size_controls, rough, separates):
    features, regions, label = maps(rough)
    train, test = np.arange(label.size) < 120, np.arange(label.size) >= 120
    voxel = roc_auc_score(label[test], size_controls.test_scores(features, label, train, None, test, "voxels"))
    sd = size_controls.region_sd(features, regions)
    second = roc_auc_score(label[test], size_controls.test_scores(sd, label, train, None, test, "regions"))
    assert abs(voxel - 0.5) < 0.12  # zero-mean differences: nothing linear to read
    assert (second > 0.8) if separates else (abs(second - 0.5) < 0.12)
    ratio = float(np.median(size_controls.sd_ratios(features, regions, label)))
    assert ratio == pytest.approx(rough, abs=0.03)
