"""The region-mean yardstick: means per atlas label, learning a planted regional effect, chance without one."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from dmriscope.io import InputError
from dmriscope.region_baseline import fit_region_baseline, fold_predictions, region_means


def atlas() -> np.ndarray:
    grid = np.zeros((6, 8, 8), np.int16)
    grid[1:3, 1:4, 1:4], grid[3:5, 4:7, 4:7], grid[1:5, 1:3, 5:7] = 2, 5, 9
    return grid


def test_means_per_label_match_numpy():
    rng = np.random.default_rng(0)
    store, labels = rng.normal(size=(4, 6, 8, 8)).astype(np.float32), atlas()
    got = region_means(store, labels, [2, 0])
    for i, row in enumerate([2, 0]):
        expected = [store[row][labels == r].astype(np.float64).mean() for r in (2, 5, 9)]
        np.testing.assert_allclose(got[i], expected, rtol=1e-12)
    with pytest.raises(InputError, match="no region"):
        region_means(store, np.zeros_like(labels), [0])


def cohort(effect: float, n: int = 120, seed: int = 0) -> tuple[np.ndarray, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 2
    store = rng.normal(size=(n, 6, 8, 8)).astype(np.float32)
    store[:, atlas() == 5] += effect * labels[:, None]  # region 5 differs between the classes
    sets = np.where(np.arange(n) < 80, "train", np.where(np.arange(n) < 90, "val", "test"))
    index = pd.DataFrame({"row": np.arange(n), "subject": [f"s{i:03d}" for i in range(n)], "set": sets,
                          "group": np.where(labels == 1, "M", "F"), "age_bin": "22-25", "label": labels})  # fmt: skip
    return store, index


@pytest.mark.parametrize(("effect", "low", "high"), [(0.8, 0.9, 1.0), (0.0, 0.2, 0.8)])
def test_learns_a_regional_effect_and_stays_at_chance_without(effect, low, high):
    aucs = []
    for seed in range(3):
        store, index = cohort(effect, seed=seed)
        out = fold_predictions(region_means(store, atlas(), index["row"].tolist()), index, 0)
        assert len(out) == 30 and set(out["subject"]) == set(index.loc[index["set"] == "test", "subject"])
        from sklearn.metrics import roc_auc_score

        aucs.append(roc_auc_score(out["label"], out["p_positive"]))
    assert low <= np.mean(aucs) <= high, aucs


def test_rule_writes_pooled_folds(tmp_path):
    store, index = cohort(0.8, n=60)
    np.save(tmp_path / "FA.npy", store)
    np.save(tmp_path / "atlas.npy", atlas())
    paths = []
    for fold in range(2):  # two folds testing disjoint halves
        part = index.copy()
        part["set"] = np.where((np.arange(60) % 2 == fold) & (np.arange(60) >= 30), "test", "train")
        part.loc[(part.index % 7 == 0) & (part["set"] == "train"), "set"] = "val"
        part.to_csv(tmp_path / f"i{fold}.tsv", sep="\t", index=False)
        paths.append(str(tmp_path / f"i{fold}.tsv"))
    summary = fit_region_baseline(
        metric="FA", tensor=str(tmp_path / "FA.npy"), atlas=str(tmp_path / "atlas.npy"), indexes=paths,
        out_predictions=str(tmp_path / "p.tsv"), out_metrics=str(tmp_path / "m.json"), n_resamples=100,
    )  # fmt: skip
    predictions = pd.read_csv(tmp_path / "p.tsv", sep="\t")
    assert len(predictions) == 30 and predictions["subject"].is_unique and set(predictions["fold"]) == {0, 1}
    assert json.loads((tmp_path / "m.json").read_text())["auc"] == pytest.approx(summary["auc"])


def test_confound_regression_takes_a_size_signal_out_of_the_region_means():
    store, index = cohort(0.0, n=400)
    rng = np.random.default_rng(5)
    volume = 1.3e6 + 4.4e5 * index["label"].to_numpy() + rng.normal(0, 1.45e5, len(index))
    store += ((volume - volume.mean()) / 1.45e5)[:, None, None, None].astype(np.float32) * 0.5  # every region
    index = index.assign(brain_volume=volume)
    index["set"] = np.where(np.arange(len(index)) < 200, "train", "test")
    features = region_means(store, atlas(), index["row"].tolist())
    from sklearn.metrics import roc_auc_score

    raw, regressed = (fold_predictions(features, index, 0, r) for r in (None, "brain_volume"))
    assert roc_auc_score(raw["label"], raw["p_positive"]) > 0.9
    assert abs(roc_auc_score(regressed["label"], regressed["p_positive"]) - 0.5) < 0.1
    with pytest.raises(InputError, match="fold 0: .*'age'"):
        fold_predictions(features, index, 0, "age")
