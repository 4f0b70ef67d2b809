"""Evaluation: metrics on hand-worked examples and against sklearn, a seeded bootstrap CI, and the rule's files."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from dmriscope.checkpoints import load_model
from dmriscope.device import torch_threads
from dmriscope.engine import predict
from dmriscope.evaluate import predict_test_files
from dmriscope.scores import (
    PREDICTION_COLUMNS,
    bootstrap_auc_ci,
    classification_metrics,
    rank_auc,
    summarise,
)
from dmriscope.train_run import train_model_files

LABELS = np.array([1, 1, 0, 0, 1])
P_MALE = np.array([0.9, 0.4, 0.6, 0.1, 0.7])


def test_metrics_on_a_hand_worked_example():
    # predicted male: 0.9, 0.6, 0.7 -> TP 2, FN 1 (0.4), FP 1 (0.6), TN 1 (0.1)
    # AUC: of the 3 x 2 male/female pairs only (0.4, 0.6) is ordered wrongly -> 5/6
    m = classification_metrics(LABELS, P_MALE)
    assert m == {
        "n": 5,
        "n_positive": 3,
        "n_negative": 2,
        "auc": pytest.approx(5 / 6),
        "accuracy": pytest.approx(0.6),
        "precision": pytest.approx(2 / 3),
        "recall": pytest.approx(2 / 3),
    }


def test_threshold_is_inclusive_and_degenerate_cases():
    m = classification_metrics(np.array([1, 0]), np.array([0.5, 0.49]))
    assert m["accuracy"] == 1.0 and m["precision"] == 1.0
    m = classification_metrics(np.array([1, 1, 0]), np.array([0.1, 0.2, 0.3]))  # nobody called male
    assert m["precision"] == 0.0 and m["recall"] == 0.0 and m["auc"] == 0.0
    assert classification_metrics(np.array([0, 0]), np.array([0.1, 0.8]))["auc"] is None


def test_auc_matches_sklearn_on_random_data():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 50)
    p = np.round(rng.random(50), 1)  # ties included
    assert classification_metrics(y, p)["auc"] == pytest.approx(roc_auc_score(y, p))


def test_rank_auc_equals_sklearn_row_by_row():
    rng = np.random.default_rng(2)
    y = rng.integers(0, 2, 30)
    scores = np.round(rng.random((40, 30)), 1)  # many ties
    expected = [roc_auc_score(y, row) for row in scores]
    np.testing.assert_allclose(rank_auc(y, scores), expected, rtol=0, atol=1e-12)


def test_bootstrap_ci_is_seeded_and_contains_the_estimate():
    rng = np.random.default_rng(1)
    y = np.r_[np.ones(20, int), np.zeros(25, int)]
    p = np.clip(0.5 + 0.25 * (y - 0.5) + rng.normal(0, 0.2, y.size), 0, 1)
    auc = roc_auc_score(y, p)
    a = bootstrap_auc_ci(y, p, n_resamples=500, seed=3)
    assert a == bootstrap_auc_ci(y, p, n_resamples=500, seed=3)
    assert a != bootstrap_auc_ci(y, p, n_resamples=500, seed=4)
    assert a[0] < auc < a[1]
    assert 0.02 < a[1] - a[0] < 0.5
    narrow = bootstrap_auc_ci(y, p, n_resamples=500, seed=3, level=0.5)
    assert a[0] < narrow[0] < narrow[1] < a[1]
    assert bootstrap_auc_ci(np.array([1, 1, 0]), np.array([0.9, 0.8, 0.1]), 100) == (1.0, 1.0)
    assert bootstrap_auc_ci(np.array([1, 1]), np.array([0.9, 0.8]), 100) is None


def test_summary_has_age_bins_and_states_positive_class():
    frame = pd.DataFrame(
        {"label": LABELS, "p_positive": P_MALE, "age_bin": ["22-25", "22-25", "22-25", "26-30", "26-30"]}
    )
    s = summarise(frame, n_resamples=200, seed=0)
    assert "male" in s["positive_class"] and s["ci_level"] == 0.95
    assert s["auc"] == pytest.approx(5 / 6)
    young = s["by_age_bin"]["22-25"]
    assert young["n_positive"] == 2 and young["n_negative"] == 1 and young["auc"] == pytest.approx(0.5)
    assert s["by_age_bin"]["26-30"]["n_positive"] == 1 and s["by_age_bin"]["26-30"]["n_negative"] == 1


def test_predict_and_summarise_a_seed_ensemble(tmp_path):
    """Two seeds of one model: each run's predictions are the model's, the reported ones their mean, the spread
    the per-seed AUCs."""
    from test_engine import GRID, write_store

    from dmriscope.ensemble import summarise_runs

    store = write_store(tmp_path / "store", effect=1.5, counts=(20, 10, 20))
    runs = [("0", "0"), ("0", "1")]
    with torch_threads(1):
        for _, seed in runs:
            out = tmp_path / f"seed{seed}"
            train_model_files(
                model="cnn2d",
                tensor=store["tensor"],
                index=store["index"],
                norm=store["norm"],
                brain_mask=store["brain_mask"],
                split_digest=store["split"],
                pretrained=None,
                train={"epochs": 2, "batch_size": 10, "seed": int(seed)},
                models={"cnn2d": {"width": 4}},
                grid=list(GRID),
                checkpoint_dir=str(tmp_path / f"ck{seed}"),
                best=str(out / "best.pt"),
                history=str(out / "history.jsonl"),
                hparams=str(out / "hparams.json"),
            )
            predict_test_files(
                checkpoint=str(out / "best.pt"),
                tensor=store["tensor"],
                index=store["index"],
                brain_mask=store["brain_mask"],
                out_predictions=str(out / "predictions.tsv"),
                threads=1,
            )
        model, _ = load_model(tmp_path / "seed0/best.pt", "cpu")
    summary = summarise_runs(
        model="cnn2d",
        metric="FA",
        runs=runs,
        predictions=[str(tmp_path / f"seed{s}/predictions.tsv") for _, s in runs],
        hparams=[str(tmp_path / f"seed{s}/hparams.json") for _, s in runs],
        histories=[str(tmp_path / f"seed{s}/history.jsonl") for _, s in runs],
        out_predictions=str(tmp_path / "predictions.tsv"),
        out_metrics=str(tmp_path / "metrics.json"),
        out_roc=str(tmp_path / "fig/roc.png"),
        out_curve=str(tmp_path / "fig/curve.png"),
        n_resamples=200,
    )
    per_seed = [pd.read_csv(tmp_path / f"seed{s}/predictions.tsv", sep="\t", dtype={"subject": str}) for _, s in runs]
    assert list(per_seed[0].columns) == PREDICTION_COLUMNS and len(per_seed[0]) == 20
    index = pd.read_csv(store["index"], sep="\t")
    assert list(per_seed[0]["subject"]) == list(index.loc[index["set"] == "test", "subject"])
    assert (per_seed[0]["label"] == (per_seed[0]["group"] == "M")).all()
    from dmriscope.tensors import open_dataset

    test = open_dataset(store["tensor"], store["index"], store["norm"], store["brain_mask"], ["test"])
    p, _, _ = predict(model, test, __import__("torch").device("cpu"))
    np.testing.assert_allclose(per_seed[0]["p_positive"], p, rtol=0, atol=1e-7)
    assert not np.allclose(per_seed[0]["p_positive"], per_seed[1]["p_positive"])  # the seeds trained different models
    pooled = pd.read_csv(tmp_path / "predictions.tsv", sep="\t", dtype={"subject": str})
    assert list(pooled.columns) == [*PREDICTION_COLUMNS, "fold"]
    np.testing.assert_allclose(
        pooled["p_positive"], (per_seed[0]["p_positive"] + per_seed[1]["p_positive"]) / 2, atol=1e-6
    )
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics == json.loads(json.dumps(summary))
    assert metrics["auc"] == pytest.approx(roc_auc_score(pooled["label"], pooled["p_positive"]), abs=1e-5)
    for auc, table in zip(metrics["seed_auc"], per_seed, strict=True):
        assert auc == pytest.approx(roc_auc_score(table["label"], table["p_positive"]))
    assert metrics["seeds"] == [0, 1] and metrics["folds"] == 1 and len(metrics["runs"]) == 2
    assert metrics["n_positive"] + metrics["n_negative"] == 20 and set(metrics["by_age_bin"]) == {"22-25", "26-30"}
    for name in ("roc.png", "curve.png"):
        assert (tmp_path / "fig" / name).read_bytes()[:4] == b"\x89PNG"


def test_auc_p_value_is_the_exact_rank_test():
    from math import comb

    from dmriscope.scores import auc_p_value

    labels = np.r_[np.ones(5), np.zeros(5)].astype(int)  # scipy's exact null distribution at n <= 8 per class
    separated = np.r_[np.linspace(0.6, 0.9, 5), np.linspace(0.1, 0.4, 5)]
    assert auc_p_value(labels, separated) == pytest.approx(1 / comb(10, 5))  # only one ordering is as extreme
    assert auc_p_value(labels, separated[::-1]) == pytest.approx(1.0)
    assert auc_p_value(np.ones(4, int), np.arange(4.0)) is None
