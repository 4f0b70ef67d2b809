"""Brain size: volumes from masks, the size-only baseline and the volume-matched AUC that size alone cannot pass."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from dmriscope.brain_size import brain_volume, measure_brain_volumes
from dmriscope.io import InputError, save_nifti
from dmriscope.size_baseline import matched_auc, partialled_auc, partialled_scores, size_only_predictions


def test_volume_is_voxels_times_voxel_size(tmp_path):
    mask = np.zeros((10, 10, 10), np.uint8)
    mask[2:7, 3:6, 1:9] = 1  # 5 x 3 x 8 = 120 voxels
    save_nifti(mask, np.diag([1.25, 1.25, 2.0, 1.0]), tmp_path / "m.nii.gz", dtype=np.uint8)
    assert brain_volume(tmp_path / "m.nii.gz") == pytest.approx(120 * 1.25 * 1.25 * 2.0)
    save_nifti(np.zeros((4, 4, 4), np.uint8), np.eye(4), tmp_path / "empty.nii.gz", dtype=np.uint8)
    with pytest.raises(InputError, match="empty.nii.gz: the brain mask is empty"):
        measure_brain_volumes(masks=[str(tmp_path / "empty.nii.gz")], subjects=["a"], out=str(tmp_path / "v.tsv"))
    assert not (tmp_path / "v.tsv").exists()


def cohort(n: int = 400, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = (np.arange(n) % 2).astype(int)
    volumes = rng.normal(1450, 140, n) * np.where(labels == 1, 1.15, 1.0)  # males ~15% larger, as on the phantom
    return labels, volumes


def test_a_size_reader_falls_to_chance_among_matched_pairs():
    labels, volumes = cohort()
    assert roc_auc_score(labels, volumes) > 0.75  # size alone separates the sexes...
    size = matched_auc(labels, volumes, volumes, n_resamples=200)
    # ...but hardly among pairs within the caliper: what is left is the size difference inside the caliper itself
    # (a pure size reader always picks the larger of a pair, and within 0.2 SD the male is larger slightly more often)
    assert size["n_pairs"] > 1000 and 0.45 < size["auc"] < 0.6
    assert size["ci"][0] < 0.6


def test_a_size_free_signal_survives_matching():
    labels, volumes = cohort(seed=1)
    rng = np.random.default_rng(2)
    signal = labels * 1.5 + rng.normal(size=labels.size)  # independent of volume
    raw = roc_auc_score(labels, signal)
    matched = matched_auc(labels, signal, volumes, n_resamples=200)
    assert abs(matched["auc"] - raw) < 0.06 and matched["ci"][0] > 0.75


def test_partialled_scores_equal_least_squares_residuals():
    rng = np.random.default_rng(3)
    scores, volumes = rng.normal(size=(3, 50)), rng.normal(1450, 140, (3, 50))
    for row in range(3):
        design = np.c_[np.ones(50), volumes[row]]
        fit = np.linalg.lstsq(design, scores[row], rcond=None)[0]
        np.testing.assert_allclose(partialled_scores(scores, volumes)[row], scores[row] - design @ fit, atol=1e-10)


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-x))


def test_partialling_takes_size_out_where_matching_finds_no_pair():
    rng = np.random.default_rng(4)
    labels = np.arange(400) % 2
    volumes = rng.normal(1250, 130, 400) * np.where(labels == 1, 1.52, 1.0)  # as the 15% size-only cohort
    size_reader = partialled_auc(labels, sigmoid((volumes - 1550) / 100 + rng.normal(0, 1, 400)), volumes)
    assert roc_auc_score(labels, volumes) > 0.99 and size_reader["ci"][0] < 0.5 < size_reader["ci"][1]
    exact = partialled_auc(labels, sigmoid((volumes - 1550) / 100), volumes, n_resamples=50)  # no residual at all
    assert exact["auc"] == 0.5 and exact["ci"] == [0.5, 0.5]
    microstructure = sigmoid(3 * labels - 1.5 + rng.normal(0, 0.5, 400))  # independent of volume within a sex
    reader = partialled_auc(labels, microstructure, volumes, n_resamples=200)
    assert reader["ci"][0] > 0.6 and reader["auc"] <= reader["ceiling"] + 0.02
    assert partialled_auc(labels[:1], volumes[:1], volumes[:1])["auc"] is None


def test_baseline_learns_from_training_subjects_only():
    labels, volumes = cohort(60, seed=3)
    subjects = [f"s{i:02d}" for i in range(60)]
    fold = pd.DataFrame({"subject": subjects, "sex": np.where(labels == 1, "M", "F"), "age_bin": "22-25",
                         "set": ["train"] * 40 + ["test"] * 20})  # fmt: skip
    series = pd.Series(volumes, index=subjects)
    first = size_only_predictions(series, [fold])
    assert sorted(first["subject"]) == subjects[40:]
    changed = series.copy()
    changed.iloc[40:] = changed.iloc[40:].to_numpy()[::-1]  # permute the test subjects' volumes
    second = size_only_predictions(changed, [fold])
    # the fitted model is the same (it saw training volumes only): the test predictions are permuted, not refitted
    assert sorted(first["p_positive"].round(12)) == sorted(second["p_positive"].round(12))
    assert (np.diff(second.set_index("subject").loc[subjects[40:], "p_positive"].to_numpy()) != 0).any()
    with pytest.raises(InputError, match="subject s59: no brain volume"):
        size_only_predictions(series.iloc[:59], [fold])


def test_volume_matching_removes_the_size_difference(tmp_path):
    from dmriscope.brain_size import volume_matched_subjects
    from dmriscope.cohort.participants import write_participants
    from dmriscope.split import split_cohort_files

    labels, volumes = cohort(300, seed=5)
    subjects = [f"s{i:03d}" for i in range(300)]
    people = pd.DataFrame({"subject": subjects, "sex": np.where(labels == 1, "M", "F"), "age": 25, "age_bin": "22-25"})
    series = pd.Series(volumes, index=subjects)
    kept = volume_matched_subjects(people, series)
    chosen = people.set_index("subject").loc[kept]
    assert (chosen["sex"] == "M").sum() == (chosen["sex"] == "F").sum() >= 40
    assert roc_auc_score(chosen["sex"] == "M", series.loc[kept]) < 0.6  # from > 0.75 before matching
    path, table = tmp_path / "participants.tsv", tmp_path / "volumes.tsv"
    write_participants(people, path)
    series.rename("brain_volume_mm3").rename_axis("subject").reset_index().to_csv(table, sep="\t", index=False)
    split_cohort_files(participants=str(path), split_path=str(tmp_path / "s.tsv"), digest_path=str(tmp_path / "d"),
                       fold_paths=[str(tmp_path / f"f{k}.tsv") for k in range(3)], scheme="kfold", n_val=6, seed=0,
                       match="volume", volumes=str(table))  # fmt: skip
    split = pd.read_csv(tmp_path / "s.tsv", sep="\t", dtype={"subject": str})
    assert sorted(split.loc[split["set"] == "cv", "subject"]) == kept and len(split) == 300
    assert set(split.loc[split["set"] == "unused", "fold"]) == {-1}
    with pytest.raises(InputError, match="after volume matching"):
        split_cohort_files(participants=str(path), split_path=str(tmp_path / "h.tsv"), digest_path=str(tmp_path / "e"),
                           fold_paths=[str(tmp_path / "h0.tsv")], counts=(200, 20, 60),
                           match="volume", volumes=str(table))  # fmt: skip
