"""The training engine: deterministic, resumable to the same result, learns a planted signal and not noise."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from dmriscope.augment import RegionOccluder, random_shift
from dmriscope.checkpoints import load_model
from dmriscope.device import torch_threads
from dmriscope.engine import FitResult, fit, predict, selection_start
from dmriscope.io import InputError, read_history
from dmriscope.optim import BalancedLoss, warmup_cosine
from dmriscope.scores import bootstrap_auc_ci, classification_metrics
from dmriscope.tensors import INDEX_COLUMNS, open_dataset
from dmriscope.train_run import train_model_files
from dmriscope.train_settings import TrainSettings

GRID = (6, 8, 8)
REGION = (slice(1, 5), slice(2, 6), slice(2, 6))  # 64 voxels where males differ


class Tiny(nn.Module):
    """conv -> ReLU -> global mean -> dropout + linear; (B, 1, S, H, W) -> (B, k)."""

    def __init__(self, k: int = 1) -> None:
        super().__init__()
        self.backbone = nn.Sequential(nn.Conv3d(1, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool3d(1), nn.Flatten())
        self.head = nn.Sequential(nn.Dropout(0.2), nn.Linear(4, k))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x))


def write_store(folder, effect: float, counts=(40, 20, 40), seed: int = 0) -> dict:
    """A tensor store on disk: N(0, 1) volumes; males get +effect in REGION. Returns the paths."""
    rng = np.random.default_rng(seed)
    sets = [name for name, n in zip(("train", "val", "test"), counts, strict=True) for _ in range(n)]
    sex = np.array(["M", "F"])[(np.arange(len(sets)) % 5 < 2).astype(int) ^ 1]  # 40 % male
    data = rng.normal(size=(len(sets), *GRID)).astype(np.float32)
    for i in np.flatnonzero(sex == "M"):
        data[i][REGION] += effect
    folder.mkdir(parents=True, exist_ok=True)
    np.save(folder / "X.npy", data)
    index = pd.DataFrame(
        {
            "row": range(len(sets)),
            "subject": [f"s{i:03d}" for i in range(len(sets))],
            "set": sets,
            "group": sex,
            "age_bin": np.array(["22-25", "26-30"])[np.arange(len(sets)) % 2],
        }
    )
    index["label"] = (index["group"] == "M").astype(int)
    index[INDEX_COLUMNS].to_csv(folder / "X_index.tsv", sep="\t", index=False)
    train = data[np.array(sets) == "train"]
    (folder / "X_norm.json").write_text(json.dumps({"mean": float(train.mean()), "std": float(train.std())}))
    np.save(folder / "brain_mask.npy", np.ones(GRID, bool))
    (folder / "split.sha256").write_text("abc123  split.tsv\n")
    return {
        k: str(folder / f)
        for k, f in (
            ("tensor", "X.npy"),
            ("index", "X_index.tsv"),
            ("norm", "X_norm.json"),
            ("brain_mask", "brain_mask.npy"),
            ("split", "split.sha256"),
        )
    }


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models run fastest on one thread (and do not fight other jobs for the cores)."""
    with torch_threads(1):
        yield


def datasets(paths: dict):
    args = (paths["tensor"], paths["index"], paths["norm"], paths["brain_mask"])
    return [open_dataset(*args, [name]) for name in ("train", "val", "test")]


SETTINGS = TrainSettings(epochs=4, batch_size=8, lr=0.01, weight_decay=0.0, patience=100, warmup_epochs=1, seed=3)


def run(paths: dict, folder, settings: TrainSettings = SETTINGS, on_epoch_end=None) -> tuple[FitResult, nn.Module]:
    train, val, _ = datasets(paths)
    torch.manual_seed(settings.seed)
    model = Tiny()
    return fit(
        model, train, val, settings, folder, run_id="r1", device=torch.device("cpu"), on_epoch_end=on_epoch_end
    ), model


def strip(history: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "seconds"} for r in history]


@pytest.fixture(scope="module")
def signal(tmp_path_factory) -> dict:
    return write_store(tmp_path_factory.mktemp("signal"), effect=1.5)


def test_deterministic_on_cpu(signal, tmp_path):
    settings = TrainSettings(**{**SETTINGS.__dict__, "augment_shift": 1})
    a, _ = run(signal, tmp_path / "a", settings)
    b, _ = run(signal, tmp_path / "b", settings)
    assert strip(a.history) == strip(b.history)
    for key in a.best_state:
        torch.testing.assert_close(a.best_state[key], b.best_state[key], rtol=0, atol=0)
    c, _ = run(signal, tmp_path / "c", TrainSettings(**{**settings.__dict__, "seed": 4}))
    assert strip(c.history) != strip(a.history)


def crash_after_two(record: dict) -> None:
    if record["epoch"] == 2:
        raise KeyboardInterrupt("simulated kill")


def interrupted(signal: dict, folder) -> None:
    """A run killed after its second epoch's checkpoint."""
    with pytest.raises(KeyboardInterrupt):
        run(signal, folder, on_epoch_end=crash_after_two)


def test_resume_after_interruption_matches_uninterrupted(signal, tmp_path):
    full, full_model = run(signal, tmp_path / "full")
    interrupted(signal, tmp_path / "cut")
    assert len(torch.load(tmp_path / "cut" / "last.pt", weights_only=False)["history"]) == 2
    seen = []
    resumed, resumed_model = run(signal, tmp_path / "cut", on_epoch_end=lambda r: seen.append(r["epoch"]))
    assert seen == [3, 4]
    assert strip(resumed.history) == strip(full.history)
    for (name, p), q in zip(full_model.state_dict().items(), resumed_model.state_dict().values(), strict=True):
        torch.testing.assert_close(p, q, rtol=0, atol=0, msg=name)
    assert resumed.best_epoch == full.best_epoch


@pytest.mark.parametrize("damage", ["truncate last.pt", "stale truncated best_state.pt", "last.pt of an old version"])
def test_damaged_resume_state_recovers(signal, tmp_path, damage):
    """A job killed while writing, then re-run: never a raw torch error, and the result is the uninterrupted one
    (from the last good state, or from scratch when the state cannot be read)."""
    full, _ = run(signal, tmp_path / "full")
    interrupted(signal, tmp_path / "cut")
    last = tmp_path / "cut" / "last.pt"
    if damage == "truncate last.pt":
        last.write_bytes(last.read_bytes()[:1000])
    elif damage == "stale truncated best_state.pt":
        (tmp_path / "cut" / "best_state.pt").write_bytes(b"PK\x03\x04 truncated")
    else:
        state = torch.load(last, weights_only=False)
        del state["best_state"]
        torch.save(state, last)
    resumed, _ = run(signal, tmp_path / "cut")
    assert strip(resumed.history) == strip(full.history)
    for key in full.best_state:
        torch.testing.assert_close(resumed.best_state[key], full.best_state[key], rtol=0, atol=0)


def test_checkpoint_of_another_run_is_ignored(signal, tmp_path):
    run(signal, tmp_path / "x")
    train, val, _ = datasets(signal)
    torch.manual_seed(0)
    result = fit(Tiny(), train, val, SETTINGS, tmp_path / "x", run_id="other", device=torch.device("cpu"))
    assert [r["epoch"] for r in result.history] == [1, 2, 3, 4]


def test_learns_planted_signal(signal, tmp_path):
    settings = TrainSettings(**{**SETTINGS.__dict__, "epochs": 12})
    result, model = run(signal, tmp_path, settings)
    assert result.best_val_auc > 0.9
    model.load_state_dict(result.best_state)
    _, _, test = datasets(signal)
    p, y, _ = predict(model, test, torch.device("cpu"))
    assert classification_metrics(y, p)["auc"] > 0.9


def test_stays_at_chance_without_signal(tmp_path):
    null = write_store(tmp_path / "null", effect=0.0, seed=1)
    settings = TrainSettings(**{**SETTINGS.__dict__, "epochs": 12})
    result, model = run(null, tmp_path / "ck", settings)
    model.load_state_dict(result.best_state)
    _, _, test = datasets(null)
    p, y, _ = predict(model, test, torch.device("cpu"))
    low, high = bootstrap_auc_ci(y, p, n_resamples=1000, seed=0)
    assert low < 0.5 < high


def test_early_stopping_stops_after_patience(tmp_path):
    null = write_store(tmp_path / "null", effect=0.0, seed=2)
    settings = TrainSettings(**{**SETTINGS.__dict__, "epochs": 30, "patience": 2})
    result, _ = run(null, tmp_path / "ck", settings)
    assert result.stopped_early
    assert len(result.history) == result.best_epoch + 2


def test_no_model_selection_during_warmup(tmp_path):
    null = write_store(tmp_path / "null", effect=0.0, seed=2)
    settings = TrainSettings(**{**SETTINGS.__dict__, "epochs": 12, "warmup_epochs": 3, "patience": 3})
    result, _ = run(null, tmp_path / "ck", settings)
    aucs = [r["val_auc"] for r in result.history]
    assert max(aucs[:3]) > max(aucs[3:])  # this seed's best validation AUC falls in the warm-up (0.70 at epoch 1)
    assert result.best_epoch == 4 + int(np.argmax(aucs[3:]))  # selection starts after the 3 warm-up epochs
    assert len(result.history) <= result.best_epoch + settings.patience  # patience counts after warm-up only
    assert selection_start(TrainSettings(epochs=2, warmup_epochs=5)) == 1  # the last epoch is always a candidate


def test_warmup_cosine_schedule():
    assert warmup_cosine(0, 4, 20, 0.1) == pytest.approx(0.25)
    assert warmup_cosine(3, 4, 20, 0.1) == pytest.approx(1.0)
    assert warmup_cosine(4, 4, 20, 0.1) == pytest.approx(1.0)
    assert warmup_cosine(12, 4, 20, 0.1) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi / 2)))
    assert warmup_cosine(20, 4, 20, 0.1) == pytest.approx(0.1)


def test_balanced_loss_weights_by_class_counts():
    loss = BalancedLoss(n_negative=6, n_positive=2)
    logits = torch.tensor([[0.3], [-1.0], [2.0]])
    y = torch.tensor([1.0, 0.0, 0.0])
    p = torch.sigmoid(logits[:, 0])
    manual = -(3.0 * y * torch.log(p) + (1 - y) * torch.log(1 - p)).mean()
    torch.testing.assert_close(loss(logits, y), manual)
    two = torch.tensor([[0.1, 0.4], [0.5, -0.2], [1.0, 0.0]])
    w = torch.tensor([8 / 12, 8 / 4])
    logp = torch.log_softmax(two, 1)
    manual2 = -(w[y.long()] * logp[torch.arange(3), y.long()]).sum() / w[y.long()].sum()
    torch.testing.assert_close(loss(two, y), manual2)
    with pytest.raises(InputError):
        BalancedLoss(n_negative=3, n_positive=0)


def test_random_shift_moves_without_wrapping():
    x = torch.arange(2 * 4 * 5 * 6, dtype=torch.float32).reshape(2, 1, 4, 5, 6) + 1
    gen = torch.Generator().manual_seed(0)
    out = random_shift(x, 1, gen)
    shifts = torch.randint(-1, 2, (2, 3), generator=torch.Generator().manual_seed(0)).tolist()
    for b, (ds, dh, dw) in enumerate(shifts):
        rolled = torch.roll(x[b, 0], shifts=(ds, dh, dw), dims=(0, 1, 2))
        valid = out[b, 0] != 0
        torch.testing.assert_close(out[b, 0][valid], rolled[valid])
        assert int(valid.sum()) == (4 - abs(ds)) * (5 - abs(dh)) * (6 - abs(dw))
    assert random_shift(x, 0, gen) is x


def test_region_occluder_fills_whole_regions_with_the_mean_wm_value():
    atlas = np.zeros((4, 6, 6), dtype=np.int16)
    atlas[0:2, 0:3, 0:3], atlas[2:4, 0:3, 0:3], atlas[0:4, 3:6, 3:6] = 1, 2, 3
    wm = atlas > 0
    x = torch.randn(64, 1, 4, 6, 6)
    occluder = RegionOccluder(atlas, wm, p=0.5)
    out = occluder(x, torch.Generator().manual_seed(0))
    changed = 0
    for b in range(64):
        diff = (out[b, 0] != x[b, 0]).numpy()
        if not diff.any():
            continue
        changed += 1
        hit = {int(r) for r in np.unique(atlas[diff])}
        assert 0 not in hit and 1 <= len(hit) <= 3
        region_mask = np.isin(atlas, sorted(hit))
        assert diff.sum() == region_mask.sum()  # whole regions, nothing else
        torch.testing.assert_close(out[b, 0][torch.from_numpy(region_mask)].unique(), x[b, 0][wm].mean().reshape(1))
    assert 20 <= changed <= 44  # about half of 64
    again = occluder(x, torch.Generator().manual_seed(0))
    torch.testing.assert_close(again, out)  # seeded: a resumed epoch repeats it
    assert RegionOccluder(atlas, wm, p=0.0)(x, torch.Generator()) is x


def test_settings_from_config_with_overrides():
    cfg = {"epochs": 9, "lr": 1e-3, "models": ["cnn2d"], "overrides": {"cnn3d": {"lr": 5e-4}}}
    assert TrainSettings.from_config(cfg, "cnn3d").lr == 5e-4
    assert TrainSettings.from_config(cfg, "cnn2d").lr == 1e-3
    assert TrainSettings.from_config(cfg, "cnn2d").epochs == 9
    with pytest.raises(InputError, match=r"overrides\.cnn2d"):
        TrainSettings.from_config({"overrides": {"cnn2d": {"lrr": 1}}}, "cnn2d")


def test_train_model_files_writes_outputs_and_load_model_restores(signal, tmp_path):
    out = tmp_path / "models"
    train_cfg = {"epochs": 2, "batch_size": 8, "lr": 1e-3, "seed": 1, "warmup_epochs": 1}
    inputs = {
        "tensor": signal["tensor"],
        "index": signal["index"],
        "norm": signal["norm"],
        "brain_mask": signal["brain_mask"],
        "split_digest": signal["split"],
        "pretrained": None,
        "train": train_cfg,
    }
    result = train_model_files(
        model="cnn2d",
        **inputs,
        models={"cnn2d": {"width": 4}},
        grid=list(GRID),
        checkpoint_dir=str(tmp_path / "ck"),
        best=str(out / "best.pt"),
        history=str(out / "history.jsonl"),
        hparams=str(out / "hparams.json"),
        threads=1,
    )
    hparams = json.loads((out / "hparams.json").read_text())
    assert hparams["split_sha256"] == "abc123" and hparams["arch"] == {"width": 4} and hparams["seed"] == 1
    assert hparams["n_train_positive"] == 16 and hparams["n_train_negative"] == 24
    assert strip(read_history(out / "history.jsonl")) == strip(result.history)
    assert not (tmp_path / "ck" / "last.pt").exists()
    model, info = load_model(out / "best.pt", "cpu")
    assert info["grid"] == list(GRID) and info["model"] == "cnn2d" and "state_dict" not in info
    for key, value in model.state_dict().items():
        torch.testing.assert_close(value, result.best_state[key], rtol=0, atol=0)
    with pytest.raises(InputError, match="grid"):
        train_model_files(
            model="cnn2d",
            **inputs,
            models={},
            grid=[6, 8, 16],
            checkpoint_dir=str(tmp_path / "ck2"),
            best=str(out / "b.pt"),
            history=str(out / "h.jsonl"),
            hparams=str(out / "p.json"),
        )
