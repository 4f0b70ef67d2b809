"""Test-set predictions of a trained model (one run of a model x metric x fold x seed): P(positive) of every test
subject. `dmriscope.scores` scores them; `dmriscope.ensemble` pools the runs first.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
from torch import nn

from dmriscope.checkpoints import checkpoint_normaliser, load_model
from dmriscope.device import pick_device, torch_threads
from dmriscope.engine import predict
from dmriscope.io import InputError, atomic_path
from dmriscope.scores import PREDICTION_COLUMNS
from dmriscope.tensors import VolumeDataset, read_index

log = logging.getLogger(__name__)


def predictions_table(model, dataset: VolumeDataset, device=None, batch_size: int = 8) -> pd.DataFrame:
    """One row per subject of ``dataset``: subject, group, age_bin, label, p_negative, p_positive."""
    p_positive, labels, _ = predict(model, dataset, pick_device(device), batch_size)
    frame = dataset.index[["subject", "group", "age_bin"]].copy()
    frame["label"] = labels.astype(int)
    frame["p_negative"] = 1.0 - p_positive
    frame["p_positive"] = p_positive
    return frame[PREDICTION_COLUMNS]


def open_test_set(
    checkpoint: str, tensor: str, index: str, brain_mask: str, device: str | None = None
) -> tuple[nn.Module, dict, VolumeDataset]:
    """The trained model of ``best.pt`` (eval mode), its metadata, and the test subjects of the fold's ``index``
    normalised with the checkpoint's own training-set statistics: what evaluation and occlusion both read."""
    model, info = load_model(checkpoint, device)
    table = read_index(index)
    test = table[table["set"] == "test"]
    if test.empty:
        raise InputError(f"{index}: no test subject")
    return model, info, VolumeDataset(tensor, test, checkpoint_normaliser(info, checkpoint), np.load(brain_mask))


def predict_test_files(
    *, checkpoint: str, tensor: str, index: str, brain_mask: str, out_predictions: str, threads: int | None = None
) -> pd.DataFrame:
    """Rule predict_test: P(positive) of every test subject of the fold's ``index`` with ``best.pt`` (one run of a
    model x metric x fold x seed; `dmriscope.ensemble` pools the runs into the reported predictions)."""
    with torch_threads(threads):
        model, info, dataset = open_test_set(checkpoint, tensor, index, brain_mask)
        predictions = predictions_table(model, dataset, batch_size=int(info["train"]["batch_size"]))
    with atomic_path(out_predictions) as tmp:
        predictions.to_csv(tmp, sep="\t", index=False, float_format="%.9g")  # float32 round-trips at 9 digits
    log.info("%s: %d test subjects predicted with %s", out_predictions, len(predictions), checkpoint)
    return predictions
