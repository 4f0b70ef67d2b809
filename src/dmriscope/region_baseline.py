"""The classical yardstick for the deep models: a logistic regression on the 48 atlas-region means of one metric.

A reviewer's first question of a deep classifier of registered maps is whether it beats region-wise statistics.
Per fold, every subject's map (the tensor store, raw values on the model grid) is reduced to its mean in each
atlas region; scikit-learn's ``LogisticRegressionCV`` (standardised features, L2, balanced classes, C chosen by
stratified 5-fold CV AUC) is fitted on the fold's training and validation subjects (never its test subjects) and
predicts the test subjects. Predictions pool over folds as a model's do (`dmriscope.ensemble`). Under confound
regression (``tensors.regress_out``) the region means are first corrected as the models' inputs are: each region's
linear slope on the covariate, fitted on the same subjects (scikit-learn's ``LinearRegression``), is removed.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence

import numpy as np
import pandas as pd

from dmriscope.io import InputError
from dmriscope.label import Label
from dmriscope.tensors import read_index

log = logging.getLogger(__name__)
NAME = "region_means"


def region_means(store: np.ndarray, atlas: np.ndarray, rows: Sequence[int]) -> np.ndarray:
    """(len(rows), R) mean of each subject's map in each non-zero atlas label (labels in increasing order)."""
    labels = np.unique(atlas[atlas > 0])
    if labels.size == 0:
        raise InputError("the atlas has no region")
    flat = atlas.ravel()
    out = np.empty((len(rows), labels.size))
    for i, row in enumerate(rows):
        volume = np.asarray(store[row], dtype=np.float64).ravel()
        out[i] = np.bincount(flat, weights=volume, minlength=labels.max() + 1)[labels]
    return out / np.bincount(flat, minlength=labels.max() + 1)[labels]


def regressed(features: np.ndarray, covariate: np.ndarray, fit: np.ndarray) -> np.ndarray:
    """``features`` minus their linear prediction from ``covariate``, fitted on the ``fit`` rows."""
    from sklearn.linear_model import LinearRegression

    covariate = covariate.reshape(-1, 1)
    model = LinearRegression().fit(covariate[fit], features[fit])
    return features - model.predict(covariate)


def fold_predictions(
    features: np.ndarray,
    index: pd.DataFrame,
    fold: int,
    regress_out: str | None = None,
    fit_sets: Sequence[str] = ("train", "val"),
) -> pd.DataFrame:
    """Fit on the fold's ``fit_sets`` rows (train + val; train alone under ``split.match: volume_train``, whose
    validation part is not matched), predict its test rows (with ``regress_out``, an index column whose linear
    prediction of the features is removed first, `regressed`)."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegressionCV
    from sklearn.model_selection import StratifiedKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    fit = index["set"].isin(list(fit_sets)).to_numpy()
    if regress_out is not None:
        if regress_out not in index.columns:
            raise InputError(f"fold {fold}: the fold index has no {regress_out!r} column (tensors.regress_out)")
        features = regressed(features, index[regress_out].to_numpy(np.float64), fit)
    test = (index["set"] == "test").to_numpy()
    y = index["label"].to_numpy()
    k = int(min(5, np.bincount(y[fit], minlength=2).min()))
    if k < 2:
        raise InputError(f"fold {fold}: fewer than 2 training subjects of a class for the region-mean baseline")
    model = make_pipeline(
        StandardScaler(),
        LogisticRegressionCV(
            Cs=10, cv=StratifiedKFold(k, shuffle=True, random_state=fold), scoring="roc_auc",
            class_weight="balanced", max_iter=5000,
        ),
    )  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(features[fit], y[fit])
    p_positive = model.predict_proba(features[test])[:, 1]
    part = index.loc[test, ["subject", "group", "age_bin", "label"]].copy()
    return part.assign(p_negative=1.0 - p_positive, p_positive=p_positive, fold=fold)


def fit_region_baseline(
    *,
    metric: str,
    tensor: str,
    atlas: str,
    indexes: Sequence[str],
    volumes: str | None = None,
    out_predictions: str,
    out_metrics: str,
    n_resamples: int = 2000,
    seed: int = 0,
    level: float = 0.95,
    label: dict | None = None,
    regress_out: str | None = None,
    fit_sets: Sequence[str] = ("train", "val"),
) -> dict:
    """Rule fit_region_baseline for one metric: out-of-sample predictions of every fold's test subjects and their
    metrics.json (with the volume-matched AUC when ``volumes`` is given; ``regress_out``: config key
    ``tensors.regress_out``; ``fit_sets``: the sets each fold fits on, `fold_predictions`)."""
    from dmriscope.scores import write_results
    from dmriscope.size_baseline import scored

    store, grid_atlas = np.load(tensor, mmap_mode="r"), np.load(atlas)
    if store.shape[1:] != grid_atlas.shape:
        raise InputError(f"{tensor}: grid {store.shape[1:]} differs from the atlas's {grid_atlas.shape}")
    parts = []
    for fold, path in enumerate(indexes):
        index = read_index(path).sort_values("row").reset_index(drop=True)
        features = region_means(store, grid_atlas, index["row"].tolist())
        parts.append(fold_predictions(features, index, fold, regress_out, fit_sets))
    predictions = pd.concat(parts, ignore_index=True).sort_values("subject", kind="mergesort").reset_index(drop=True)
    group = Label.from_config(label)
    summary = scored(
        predictions, volumes=volumes, n_resamples=n_resamples, seed=seed, level=level, label=group, model=NAME
    )
    write_results(predictions, summary, out_predictions, out_metrics)
    log.info("%s region-mean baseline: AUC %.3f %s", metric, summary["auc"], summary["auc_ci"])
    return summary
