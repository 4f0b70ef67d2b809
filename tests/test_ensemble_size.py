"""benchmarks/ensemble_size.py: a finished run's seed ensembles of every size, against sklearn's AUC."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from conftest import load_benchmark
from sklearn.metrics import roc_auc_score


@pytest.fixture(scope="module")
def bench():
    return load_benchmark("ensemble_size")


def write_run(run, seeds=(0, 1, 2, 3), folds=2, n=60, noise=2.0) -> pd.DataFrame:
    """Per fold x seed a predictions.tsv: P = sigmoid(signal + that seed's own noise); returns all rows."""
    rng = np.random.default_rng(0)
    rows = []
    for fold in range(folds):
        label = np.arange(n) % 2
        signal = np.where(label == 1, 0.5, -0.5)
        for seed in seeds:
            p = 1 / (1 + np.exp(-(signal + noise * rng.standard_normal(n))))
            table = pd.DataFrame(
                {
                    "subject": [f"s{fold}_{i:03d}" for i in range(n)],
                    "group": np.where(label == 1, "M", "F"),
                    "age_bin": "22-25",
                    "label": label,
                    "p_negative": 1 - p,
                    "p_positive": p,
                }
            )
            out = run / f"results/models/cnn2d/FA/fold{fold}/seed{seed}/predictions.tsv"
            out.parent.mkdir(parents=True)
            table.to_csv(out, sep="\t", index=False)
            rows.append(table.assign(fold=fold, seed=seed))
    return pd.concat(rows)


def test_sizes_match_sklearn_and_noise_averages_out(bench, tmp_path) -> None:
    """k = 1 spans the single seeds' AUCs; k = all is the mean-P ensemble's; independent noise makes the mean
    AUC over subsets rise with k."""
    rows = write_run(tmp_path)
    tables = bench.run_tables(tmp_path, "cnn2d", "FA")
    table = pd.DataFrame(bench.size_rows(tables, max_subsets=50)).set_index("k")
    single = [roc_auc_score(r["label"], r["p_positive"]) for _, r in rows.groupby("seed")]
    assert np.isclose(table.loc[1, "min"], min(single)) and np.isclose(table.loc[1, "max"], max(single))
    assert np.isclose(table.loc[1, "first_k"], single[0])
    full = rows.groupby(["fold", "subject"]).agg(label=("label", "first"), p=("p_positive", "mean"))
    assert np.isclose(table.loc[4, "first_k"], roc_auc_score(full["label"], full["p"]))
    assert list(table["subsets"]) == [4, 6, 4, 1]
    assert table["mean"].is_monotonic_increasing and table.loc[4, "mean"] > table.loc[1, "mean"] + 0.05


def test_folds_with_other_seeds_are_refused(bench, tmp_path) -> None:
    write_run(tmp_path, seeds=(0, 1))
    extra = tmp_path / "results/models/cnn2d/FA/fold0/seed2"
    extra.mkdir()
    (extra / "predictions.tsv").write_text((extra.parent / "seed0/predictions.tsv").read_text())
    with pytest.raises(SystemExit, match="different seeds"):
        bench.run_tables(tmp_path, "cnn2d", "FA")
