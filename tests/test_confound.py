"""Cross-validated confound regression of brain volume (tensors.regress_out; dmriscope.normalise, fold_tensors)."""

import json

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.metrics import roc_auc_score

from dmriscope.config import ConfigError, check_tensors
from dmriscope.fold_tensors import fold_tensors
from dmriscope.io import InputError
from dmriscope.normalise import Normaliser, RunningMoments, regressed_statistics
from dmriscope.tensors import INDEX_COLUMNS, VolumeDataset, open_dataset

GRID = (4, 5, 6)


def test_regressed_statistics_equal_scikit_learn():
    rng = np.random.default_rng(0)
    n = 30
    covariate = rng.normal(1.5e6, 1.4e5, n)
    slopes = rng.normal(0, 1e-9, GRID)
    maps = 1e-3 + np.einsum("i,xyz->ixyz", covariate - 1.5e6, slopes) + rng.normal(0, 1e-4, (n, *GRID))
    mask = np.ones(GRID, dtype=bool)
    mask[0, 0] = False
    moments = RunningMoments(axis=0)
    moments.update(maps)
    centred = covariate - covariate.mean()
    voxels, floor, r2 = regressed_statistics(moments, np.einsum("i,ixyz->xyz", centred, maps), centred, mask)
    fit = LinearRegression().fit(covariate[:, None], maps.reshape(n, -1))
    residual_sd = (maps.reshape(n, -1) - fit.predict(covariate[:, None])).std(axis=0).reshape(GRID)
    np.testing.assert_allclose(voxels[2][mask], fit.coef_[:, 0].reshape(GRID)[mask], rtol=1e-4)
    np.testing.assert_allclose(voxels[1][mask], np.maximum(residual_sd, floor)[mask], rtol=1e-4)
    np.testing.assert_allclose(voxels[0][mask], maps.mean(axis=0)[mask], rtol=1e-6)
    assert (voxels[:, ~mask] == np.array([[0.0], [1.0], [0.0]])).all()
    assert 0 < r2 < 1
    with pytest.raises(InputError, match="covariate does not vary"):
        regressed_statistics(moments, np.zeros(GRID), np.zeros(n), mask)


def test_normaliser_removes_the_slope_by_hand_on_a_slab_and_after_a_checkpoint():
    mean, std = np.full(GRID, 2.0, np.float32), np.full(GRID, 0.5, np.float32)
    slope = np.linspace(-1, 1, np.prod(GRID)).reshape(GRID).astype(np.float32)
    summary = {"regress_out": "brain_volume"}
    norm = Normaliser(mean, std, None, "voxel", summary, slope=slope, covariate_mean=10.0)
    mask = np.ones(GRID, dtype=bool)
    x = (mean + slope * 3.0 + 0.25).astype(np.float32)  # a subject 3 units above the training mean, +0.5 SD
    bound = norm.bind(mask)
    np.testing.assert_allclose(bound(x, covariate=13.0), 0.5, atol=1e-6)
    part = (slice(1, 3),)
    np.testing.assert_array_equal(bound(x[part], part, 13.0), bound(x, covariate=13.0)[part])
    again = Normaliser.from_state(norm.state())
    assert again.regress_out == "brain_volume"
    np.testing.assert_array_equal(again.bind(mask)(x, covariate=13.0), bound(x, covariate=13.0))
    with pytest.raises(InputError, match="covariate"):
        bound(x)
    assert Normaliser(mean, std, mode="voxel").regress_out is None


def write_cohort(tmp_path, n: int, signal: float, seed: int = 0) -> dict:
    """A store whose voxels depend linearly on brain volume, males 3 SD larger (as in configs/size-only-15.yaml,
    where the volumes do not overlap), plus ``signal`` SDs of a label effect in half the voxels; holdout sets
    train / val / test."""
    rng = np.random.default_rng(seed)
    label = np.tile([1, 0], n // 2)
    volume = 1.3e6 + 4.4e5 * label + rng.normal(0, 1.45e5, n)
    pattern = rng.normal(0, 1, GRID)
    store = 1.0 + np.einsum("i,xyz->ixyz", (volume - 1.5e6) / 1.45e5, pattern) + rng.normal(0, 1, (n, *GRID))
    store[:, : GRID[0] // 2] += signal * label[:, None, None, None]
    np.save(tmp_path / "MD.npy", store.astype(np.float32))
    sets = np.where(np.arange(n) < n // 2, "train", np.where(np.arange(n) < n * 3 // 5, "val", "test"))
    subjects = [f"s{i:04d}" for i in range(n)]
    index = pd.DataFrame(
        {"row": np.arange(n), "subject": subjects, "set": sets, "group": np.where(label == 1, "M", "F")}
    ).assign(age_bin="22-25", label=label)[INDEX_COLUMNS]
    index.to_csv(tmp_path / "store.tsv", sep="\t", index=False)
    index[["subject", "set"]].to_csv(tmp_path / "fold0.tsv", sep="\t", index=False)
    pd.DataFrame({"subject": subjects, "brain_volume_mm3": volume}).to_csv(
        tmp_path / "volumes.tsv", sep="\t", index=False
    )
    np.save(tmp_path / "brain_mask.npy", np.ones(GRID, dtype=bool))
    return {"label": label}


def normalise_and_score(tmp_path, regress_out: str | None) -> float:
    """fold_tensors, then the fold's datasets; a logistic regression on the train inputs scored on the test ones."""
    t = tmp_path
    fold_tensors(
        tensor=t / "MD.npy", index=t / "store.tsv", fold=t / "fold0.tsv", brain_mask=t / "brain_mask.npy",
        out_index=t / "MD_index.tsv", out_norm=t / "MD_norm.json", out_norm_voxels=t / "MD_norm.npy",
        clip=None, regress_out=regress_out, volumes=t / "volumes.tsv",
    )  # fmt: skip
    sets = {}
    for name in ("train", "test"):
        data = open_dataset(t / "MD.npy", t / "MD_index.tsv", t / "MD_norm.json", t / "brain_mask.npy", [name],
                            norm_voxels=t / "MD_norm.npy")  # fmt: skip
        sets[name] = (np.stack([data[i][0].numpy().ravel() for i in range(len(data))]), data.labels)
    model = LogisticRegression(C=0.1, max_iter=2000).fit(*sets["train"])
    return roc_auc_score(sets["test"][1], model.decision_function(sets["test"][0]))


def test_regression_removes_a_size_signal_and_keeps_a_label_effect(tmp_path):
    write_cohort(tmp_path, n=600, signal=0.0)
    assert normalise_and_score(tmp_path, None) > 0.8  # size alone separates the groups
    assert abs(normalise_and_score(tmp_path, "brain_volume") - 0.5) < 0.08  # 240 test subjects: CI half-width ~0.07
    stats = json.loads((tmp_path / "MD_norm.json").read_text())
    assert stats["regress_out"] == "brain_volume" and stats["covariate_r2_median"] > 0.3
    index = pd.read_csv(tmp_path / "MD_index.tsv", sep="\t")
    volumes = pd.read_csv(tmp_path / "volumes.tsv", sep="\t")
    train = index["set"] == "train"
    assert stats["covariate_mean"] == pytest.approx(volumes.loc[train, "brain_volume_mm3"].mean())
    # a label effect survives, diminished: regression also removes the part of the label that volume predicts, so
    # only the label's part orthogonal to volume is left to classify on; with the groups 3 volume SDs apart that
    # caps any classifier's AUC at Phi(1.35 / sqrt 2) = 0.83 however strong the effect (README, "Brain size")
    write_cohort(tmp_path, n=600, signal=1.5)
    assert normalise_and_score(tmp_path, "brain_volume") > 0.7


def test_bad_confound_inputs_name_the_key_or_file(tmp_path):
    write_cohort(tmp_path, n=20, signal=0.0)
    volumes = pd.read_csv(tmp_path / "volumes.tsv", sep="\t")
    volumes.iloc[1:].to_csv(tmp_path / "volumes.tsv", sep="\t", index=False)
    with pytest.raises(InputError, match="volumes.tsv: subject s0000"):
        normalise_and_score(tmp_path, "brain_volume")
    with pytest.raises(InputError, match="tensors.regress_out.*voxel"):
        fold_tensors(
            tensor=tmp_path / "MD.npy", index=tmp_path / "store.tsv", fold=tmp_path / "fold0.tsv",
            brain_mask=tmp_path / "brain_mask.npy", out_index=tmp_path / "i.tsv", out_norm=tmp_path / "n.json",
            out_norm_voxels=tmp_path / "n.npy", mode="global", regress_out="brain_volume",
            volumes=tmp_path / "volumes.tsv",
        )  # fmt: skip
    assert not (tmp_path / "n.json").exists()
    with pytest.raises(ConfigError, match="tensors.regress_out"):
        check_tensors({"tensors": {"regress_out": "brain_volume", "normalisation": "global"}})
    norm = Normaliser(np.zeros(GRID), np.ones(GRID), None, "voxel", {"regress_out": "brain_volume"}, np.ones(GRID))
    index = pd.read_csv(tmp_path / "store.tsv", sep="\t")
    with pytest.raises(InputError, match="no 'brain_volume' column"):
        VolumeDataset(tmp_path / "MD.npy", index, norm, np.ones(GRID, dtype=bool))
