"""The linear probe (``vit_linprobe``): an L2 logistic regression on the frozen MAE encoder's features, solved
exactly with scikit-learn and installed as the ViT's head.

A linear probe asks one question - what can a linear read-out get from these features? - and that is a convex
problem, so it is solved rather than trained. The features of every training subject (and, with
``train.augment_occlude`` > 0, of one region-occluded copy of each, so that occluded inputs stay in-distribution
for the occlusion analysis) are standardised (``StandardScaler``) and fitted by ``LogisticRegressionCV`` with
balanced class weights; the inverse regularisation C is chosen by stratified 5-fold cross-validated AUC on the
training subjects, a subject and its occluded copy always in the same fold. The standardisation becomes the head's
BatchNorm (no affine parameters: MAE's linear-probing recipe) and the coefficients its linear layer, so the saved
model is an ordinary ViT classifier that evaluation and occlusion use like any other.

Why not SGD on the head, as before: the MAE leaves its features nearly constant across subjects but informative
(README, "The MAE and the linear probe"); a head trained at the engine's learning rate on such features does not
move, so it predicts along the random direction of its initialisation, whose test AUC on informative features can
land far below chance as well as above it.
"""

from __future__ import annotations

import logging
import time

import numpy as np
import torch
from sklearn.linear_model import LogisticRegressionCV
from sklearn.metrics import log_loss
from sklearn.model_selection import StratifiedGroupKFold
from sklearn.preprocessing import StandardScaler
from torch import nn
from torch.utils.data import DataLoader, Dataset

from dmriscope.augment import RegionOccluder
from dmriscope.io import InputError
from dmriscope.train_settings import TrainSettings

log = logging.getLogger(__name__)
C_GRID = np.logspace(-4, 2, 13)
FOLDS = 5


@torch.no_grad()
def extract_features(
    model: nn.Module,
    dataset: Dataset,
    device: torch.device,
    batch_size: int,
    occluder: RegionOccluder | None = None,
    generator: torch.Generator | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Features (N, D) float64 that ``model.head`` reads, and labels (N,), in dataset order (eval mode)."""
    model.eval()
    feats, labels = [], []
    for x, y in DataLoader(dataset, batch_size=batch_size, shuffle=False):
        if occluder is not None:
            x = occluder(x, generator)
        feats.append(model.features(x.to(device)).double().cpu().numpy())
        labels.append(y.numpy())
    return np.concatenate(feats), np.concatenate(labels).astype(int)


def fit_logistic(
    features: np.ndarray, labels: np.ndarray, seed: int, groups: np.ndarray | None = None
) -> tuple[StandardScaler, LogisticRegressionCV]:
    """Standardise, then an L2 logistic regression with C chosen by stratified k-fold CV AUC (balanced classes;
    k = 5, or the smaller class's number of subjects when that is less).

    ``groups`` (e.g. the subject of each row, when a subject has an augmented copy) keeps a group in one fold, so
    that no subject is scored by a fold that saw its copy.
    """
    groups = np.arange(len(labels)) if groups is None else groups
    per_class = [len(np.unique(groups[labels == c])) for c in (0, 1)]  # subjects, not rows
    n_folds = min(FOLDS, *per_class)
    if n_folds < 2:
        raise InputError(f"linear probe: needs at least 2 training subjects per class, has {per_class}")
    folds = StratifiedGroupKFold(n_folds, shuffle=True, random_state=seed).split(features, labels, groups)
    scaler = StandardScaler().fit(features)
    clf = LogisticRegressionCV(
        Cs=C_GRID,
        cv=list(folds),
        scoring="roc_auc",
        class_weight="balanced",
        l1_ratios=(0.0,),  # pure L2
        max_iter=10_000,
        use_legacy_attributes=False,  # C_ a float, scores_ (folds, l1_ratios, Cs): scikit-learn >= 1.10's form
    )
    clf.fit(scaler.transform(features), labels)
    return scaler, clf


def install_head(model: nn.Module, scaler: StandardScaler, clf: LogisticRegressionCV) -> None:
    """Write the scaler into the head's BatchNorm and the coefficients into its 2-output linear layer, so that
    ``softmax(model(x))[:, 1]`` equals ``clf.predict_proba(scaler.transform(features))[:, 1]``."""
    norm, linear = model.head[0], model.head[1]
    if not isinstance(norm, nn.BatchNorm1d) or norm.affine or linear.out_features != 2:
        raise ValueError("linear probe: the model's head must be BatchNorm1d(affine=False) + Linear(D, 2)")
    if len(scaler.mean_) != linear.in_features:
        raise ValueError(f"linear probe: {len(scaler.mean_)} features for a head of {linear.in_features} inputs")
    coef = torch.as_tensor(np.ravel(clf.coef_), dtype=torch.float64)
    intercept = float(np.ravel(clf.intercept_)[0])
    with torch.no_grad():
        norm.running_mean.copy_(torch.as_tensor(scaler.mean_))
        norm.running_var.copy_(torch.as_tensor(scaler.scale_**2 - norm.eps).clamp_min(0.0))
        linear.weight.copy_(torch.stack([-coef / 2, coef / 2]))  # softmax of (-z/2, z/2) = sigmoid(z)
        linear.bias.copy_(torch.tensor([-intercept / 2, intercept / 2]))


def fit_linear_probe(
    model: nn.Module,
    train_set: Dataset,
    val_set: Dataset,
    settings: TrainSettings,
    device: torch.device,
    occluder: RegionOccluder | None = None,
) -> tuple[list[dict], dict[str, torch.Tensor], float]:
    """Fit the probe of ``model`` (frozen backbone, head_norm) in place; returns the history (one record), the
    state dict and the validation AUC."""
    from dmriscope.engine import predict, safe_auc

    t0 = time.perf_counter()
    model.to(device)
    x, y = extract_features(model, train_set, device, settings.batch_size)
    groups = np.arange(len(y))
    if occluder is not None:
        generator = torch.Generator().manual_seed(settings.seed)
        xo, yo = extract_features(model, train_set, device, settings.batch_size, occluder, generator)
        x, y, groups = np.concatenate([x, xo]), np.concatenate([y, yo]), np.concatenate([groups, groups])
    scaler, clf = fit_logistic(x, y, settings.seed, groups)
    install_head(model, scaler, clf)
    p_val, y_val, _ = predict(model, val_set, device, settings.batch_size)
    p_train = clf.predict_proba(scaler.transform(x))[:, 1]
    record = {
        "epoch": 1,
        "train_loss": float(log_loss(y, p_train, labels=[0, 1])),
        "val_loss": float(log_loss(y_val, p_val, labels=[0, 1])),
        "val_auc": safe_auc(y_val, p_val),
        "lr": None,
        "C": float(np.ravel(clf.C_)[0]),
        "cv_auc": float(np.asarray(clf.scores_).mean(axis=0).max()),
        "n_features": int(x.shape[1]),
        "n_samples": int(x.shape[0]),
        "seconds": round(time.perf_counter() - t0, 3),
    }
    log.info(
        "linear probe: C %.3g (CV AUC %.3f), validation AUC %.3f", record["C"], record["cv_auc"], record["val_auc"]
    )
    state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    return [record], state, record["val_auc"]
