"""Pooling the runs of a model x metric: seeds averaged within a fold, folds concatenated, the spread reported."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from dmriscope.ensemble import pool_delta_p, pool_predictions, read_runs, spread
from dmriscope.io import InputError


def predictions(subjects, labels, p_positive) -> pd.DataFrame:
    p_positive = np.asarray(p_positive, float)
    return pd.DataFrame({"subject": subjects, "group": ["M" if y else "F" for y in labels], "age_bin": "22-25",
                         "label": labels, "p_negative": 1 - p_positive, "p_positive": p_positive})  # fmt: skip


def delta(subjects, labels, before, after) -> pd.DataFrame:
    rows = []
    for s, y, b, a in zip(subjects, labels, before, after, strict=True):
        for region, shift in ((3, 0.0), (7, 0.1)):
            rows.append({"subject": s, "label": y, "region": region, "name": f"r{region}", "p_before": b,
                         "p_after": a - shift, "delta_p": b - a + shift})  # fmt: skip
    return pd.DataFrame(rows)


@pytest.fixture()
def two_folds_two_seeds():
    rng = np.random.default_rng(0)
    fold_subjects = {"0": ["s3", "s1", "s5", "s7"], "1": ["s2", "s4", "s6", "s8"]}
    labels = {"0": [1, 0, 1, 0], "1": [0, 1, 1, 0]}
    return {(f, s): predictions(fold_subjects[f], labels[f], rng.uniform(size=4)) for f in "01" for s in ("0", "1")}


def test_seeds_are_averaged_and_folds_concatenated(two_folds_two_seeds):
    runs = two_folds_two_seeds
    pooled = pool_predictions(runs)
    assert list(pooled["subject"]) == [f"s{i}" for i in range(1, 9)]  # each subject once, sorted
    for fold in "01":
        mean = (
            runs[fold, "0"].set_index("subject")["p_positive"] + runs[fold, "1"].set_index("subject")["p_positive"]
        ) / 2
        got = pooled.set_index("subject").loc[mean.index]
        np.testing.assert_allclose(got["p_positive"], mean, rtol=0, atol=1e-15)
        assert (got["fold"] == int(fold)).all()
    np.testing.assert_allclose(pooled["p_negative"] + pooled["p_positive"], 1.0)


def test_spread_is_per_fold_and_per_seed(two_folds_two_seeds):
    runs = two_folds_two_seeds
    pooled = pool_predictions(runs)
    out = spread(runs, pooled)
    for k in range(2):
        part = pooled[pooled["fold"] == k]
        assert out["fold_auc"][k] == pytest.approx(roc_auc_score(part["label"], part["p_positive"]))
    for k, seed in enumerate("01"):
        part = pd.concat([runs["0", seed], runs["1", seed]])
        assert out["seed_auc"][k] == pytest.approx(roc_auc_score(part["label"], part["p_positive"]))
    assert out["folds"] == 2 and out["seeds"] == [0, 1]
    assert out["fold_auc_sd"] == pytest.approx(np.std(out["fold_auc"], ddof=1))
    assert out["seed_auc_min"] == min(out["seed_auc"]) and out["seed_auc_max"] == max(out["seed_auc"])


def test_one_run_passes_through_unchanged(two_folds_two_seeds):
    run = two_folds_two_seeds["0", "0"]
    pooled = pool_predictions({("0", "0"): run})
    expected = run.sort_values("subject", kind="mergesort").reset_index(drop=True)
    np.testing.assert_array_equal(pooled["p_positive"], expected["p_positive"])  # bit for bit: holdout stays as it was


def test_ensemble_delta_p_is_the_delta_of_the_mean_probability():
    subjects, labels = ["a", "b"], [1, 0]
    seed0 = delta(subjects, labels, [0.9, 0.2], [0.6, 0.3])
    seed1 = delta(subjects, labels, [0.7, 0.4], [0.5, 0.1])
    pooled = pool_delta_p({("0", "0"): seed0, ("0", "1"): seed1})
    np.testing.assert_allclose(pooled["p_before"], (seed0["p_before"] + seed1["p_before"]) / 2)
    np.testing.assert_allclose(pooled["delta_p"], pooled["p_before"] - pooled["p_after"], atol=1e-15)
    assert list(pooled.columns) == list(seed0.columns)


def test_mismatched_or_repeated_subjects_are_refused(two_folds_two_seeds):
    runs = dict(two_folds_two_seeds)
    runs["0", "1"] = runs["0", "1"].iloc[::-1].reset_index(drop=True)  # the seeds list subjects in another order
    with pytest.raises(InputError, match="fold 0"):
        pool_predictions(runs)
    runs = dict(two_folds_two_seeds)
    runs["1", "0"] = runs["0", "0"]
    runs["1", "1"] = runs["0", "1"]
    with pytest.raises(InputError, match="tested twice"):
        pool_predictions(runs)


def test_predictions_of_an_older_version_are_named(tmp_path):
    path = tmp_path / "predictions.tsv"
    pd.DataFrame({"subject": ["s1"], "sex": ["M"], "label": [1], "p_female": [0.2], "p_male": [0.8]}).to_csv(
        path, sep="\t", index=False
    )
    with pytest.raises(InputError, match=r"predictions.tsv: has p_male, not p_positive"):
        read_runs([str(path)], [("0", "0")], "cnn2d FA predictions")
