"""The linear probe on a frozen MAE encoder: it reads what the features carry, through the workflow's own engine.

Two synthetic classes that differ only in a local pattern (one block of voxels raised in one class) must be told
apart by a linear read-out of the frozen, MAE-pretrained encoder (test AUC well above 0.5); the same store without
the pattern must leave it at chance. The installed head must reproduce scikit-learn's fitted probabilities.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from test_engine import datasets, write_store

from dmriscope.checkpoints import load_model
from dmriscope.device import torch_threads
from dmriscope.engine import predict
from dmriscope.io import InputError
from dmriscope.linear_probe import fit_logistic, install_head
from dmriscope.models.vit import ViTClassifier
from dmriscope.pretrain import pretrain_mae2d, pretrain_mae3d
from dmriscope.scores import classification_metrics
from dmriscope.train_run import train_model_files

VIT = {"dim": 32, "depth": 2, "heads": 2, "mlp_dim": 64, "patch": [3, 4, 4], "pool": "mean"}
PRETRAIN = {
    "mae2d": {"epochs": 3, "batch_size": 16, "lr": 3e-3, "warmup_epochs": 1},
    "mae3d": {"epochs": 3, "batch_size": 8, "lr": 3e-3, "warmup_epochs": 1},
    "weight_decay": 0.05,
    "mask_ratio": 0.75,
    "decoder_dim": 24,
    "decoder_depth": 1,
    "decoder_heads": 2,
    "seed": 0,
}
TRAIN = {"batch_size": 8, "seed": 1, "augment_occlude": 0.0}


def pretrained_encoder(paths: dict, folder) -> str:
    store = {k: paths[k] for k in ("index", "norm", "brain_mask")} | {"tensors": paths["tensor"]}
    out = {name: str(folder / name) for name in ("2d.pt", "3d.pt", "h2", "h3", "l2.png", "l3.png", "r.png")}
    settings = {"vit": VIT, "pretrain": PRETRAIN}
    pretrain_mae2d(**store, checkpoint=out["2d.pt"], history=out["h2"], loss_png=out["l2.png"], **settings)
    pretrain_mae3d(
        **store, init=out["2d.pt"], checkpoint=out["3d.pt"], history=out["h3"], loss_png=out["l3.png"],
        figure=out["r.png"], vit=VIT, pretrain=PRETRAIN,
    )  # fmt: skip
    return str(folder / "3d.pt")


def probe(effect: float, folder, vit: dict = VIT) -> tuple[float, dict, torch.nn.Module]:
    paths = write_store(folder / "store", effect=effect)
    encoder = pretrained_encoder(paths, folder)
    out = folder / "model"
    with torch_threads(1):
        train_model_files(
            model="vit_linprobe", tensor=paths["tensor"], index=paths["index"], norm=paths["norm"],
            brain_mask=paths["brain_mask"], split_digest=paths["split"], pretrained=encoder, train=TRAIN,
            models={"vit": vit}, grid=[6, 8, 8], checkpoint_dir=str(folder / "ck"), best=str(out / "best.pt"),
            history=str(out / "history.jsonl"), hparams=str(out / "hparams.json"), threads=1,
        )  # fmt: skip
        model, info = load_model(out / "best.pt", "cpu")
        p, y, _ = predict(model, datasets(paths)[2], torch.device("cpu"))
    return classification_metrics(y, p)["auc"], info, model


@pytest.fixture(scope="module")
def with_pattern(tmp_path_factory):
    return probe(1.0, tmp_path_factory.mktemp("pattern"))


def test_linear_probe_reads_a_local_pattern(with_pattern):
    auc, info, model = with_pattern
    assert auc > 0.85
    assert info["arch"]["head_norm"] is True and info["model"] == "vit_linprobe"
    norm = model.head[0]
    assert isinstance(norm, torch.nn.BatchNorm1d) and not norm.affine
    assert float(norm.running_var.min()) > 0 and int(norm.num_batches_tracked) == 0  # set by the fit, never updated


@pytest.mark.parametrize("effect", [1.0, 0.0])
def test_probe_on_every_patch_token_reads_a_local_pattern_and_not_noise(effect, tmp_path):
    """``probe_pool: tokens``: the probe reads the 8 patch tokens side by side (8 x 32 features) through the same
    BatchNorm + linear head, learns the local pattern and stays at chance without it."""
    auc, info, model = probe(effect, tmp_path, {**VIT, "probe_pool": "tokens"})
    assert info["arch"]["pool"] == "tokens" and "probe_pool" not in info["arch"]
    assert model.head[1].in_features == 8 * VIT["dim"]
    assert auc > 0.85 if effect else 0.25 < auc < 0.75


def test_installed_head_reproduces_the_logistic_regression():
    rng = np.random.default_rng(0)
    feats = rng.normal(size=(60, 32)) * rng.uniform(0.01, 3, size=32) + rng.normal(size=32)
    labels = (feats[:, 0] / feats[:, 0].std() + rng.normal(size=60) > 0).astype(int)
    scaler, clf = fit_logistic(feats, labels, seed=0)
    model = ViTClassifier((6, 8, 8), head_norm=True, **{k: v for k, v in VIT.items() if k != "pool"})
    install_head(model, scaler, clf)
    model.eval()
    with torch.no_grad():
        p = torch.softmax(model.head(torch.as_tensor(feats, dtype=torch.float32)), 1)[:, 1].numpy()
    np.testing.assert_allclose(p, clf.predict_proba(scaler.transform(feats))[:, 1], atol=1e-5)
    with pytest.raises(InputError, match="per class"):
        fit_logistic(feats[:8], np.array([0] * 7 + [1]), seed=0)
    small = fit_logistic(feats[:8], np.array([0, 1] * 4), seed=0)[1]  # 4 subjects per class: 4-fold CV
    assert np.asarray(small.scores_).shape[0] == 4


def test_linear_probe_stays_at_chance_without_a_pattern(tmp_path):
    auc, _, _ = probe(0.0, tmp_path)
    assert 0.25 < auc < 0.75  # 40 test subjects: chance +- about 2.5 SE


def test_frozen_backbone_and_fixed_feature_statistics(with_pattern, tmp_path):
    """Only the linear layer may change in training: the backbone and the feature statistics are those of the MAE
    encoder and of the training features."""
    _, info, model = with_pattern
    encoder = torch.load(info["pretrained"], weights_only=True)["model"]
    for name, value in model.backbone.state_dict().items():
        torch.testing.assert_close(value, encoder[f"encoder.{name}"], rtol=0, atol=0)
    assert json.dumps(info["arch"], sort_keys=True) == json.dumps({**VIT, "head_norm": True}, sort_keys=True)
