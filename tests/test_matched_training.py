"""split.match: volume_train - each fold's training part matched on brain volume, validation and test untouched."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

from dmriscope.brain_size import read_volumes
from dmriscope.cohort.participants import write_participants
from dmriscope.fold_tensors import fold_index
from dmriscope.io import InputError
from dmriscope.label import SEX
from dmriscope.size_baseline import size_only_predictions
from dmriscope.split import match_training_part, split_cohort_files


def write_inputs(tmp_path, n: int = 300, seed: int = 5, ratio: float = 1.15) -> tuple[str, str]:
    """participants.tsv and brain_volumes.tsv of ``n`` subjects, males ``ratio`` times larger in volume (1.15: the
    phantom's default, 1.5 SDs; 1.5: the 15% size-only cohort, no overlap)."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 2
    subjects = [f"s{i:03d}" for i in range(n)]
    people = pd.DataFrame({"subject": subjects, "sex": np.where(labels == 1, "M", "F"), "age": 25, "age_bin": "22-25"})
    volumes = rng.normal(1450e3, 140e3, n) * np.where(labels == 1, ratio, 1.0)
    participants, table = tmp_path / "participants.tsv", tmp_path / "volumes.tsv"
    write_participants(people, participants)
    pd.DataFrame({"subject": subjects, "brain_volume_mm3": volumes}).to_csv(table, sep="\t", index=False)
    return str(participants), str(table)


def split(tmp_path, participants, name, scheme="holdout", folds=1, **kw) -> list[pd.DataFrame]:
    paths = [str(tmp_path / f"{name}{k}.tsv") for k in range(folds)]
    split_cohort_files(
        participants=participants,
        split_path=str(tmp_path / f"{name}.tsv"),
        digest_path=str(tmp_path / f"{name}.sha256"),
        fold_paths=paths,
        scheme=scheme,
        seed=0,
        **kw,
    )
    return [pd.read_csv(p, sep="\t", dtype={"subject": str}) for p in [tmp_path / f"{name}.tsv", *paths]]


def test_the_training_part_is_matched_and_every_test_subject_kept(tmp_path):
    participants, table = write_inputs(tmp_path)
    volumes = read_volumes(table)
    plain_split, plain = split(tmp_path, participants, "plain", counts=(150, 30, 120))
    matched_split, matched = split(
        tmp_path, participants, "m", counts=(150, 30, 120), match="volume_train", volumes=table
    )
    for name in ("val", "test"):  # the same subjects as the unmatched split
        assert (
            plain.loc[plain["set"] == name, "subject"].tolist()
            == matched.loc[matched["set"] == name, "subject"].tolist()
        )
    train = matched[matched["set"] == "train"]
    left = matched[matched["set"] == "unused"]
    assert sorted([*train["subject"], *left["subject"]]) == sorted(plain.loc[plain["set"] == "train", "subject"])
    assert (train["sex"] == "M").sum() == (train["sex"] == "F").sum() >= 20
    before = roc_auc_score(
        plain.loc[plain["set"] == "train", "sex"] == "M", volumes.loc[plain.loc[plain["set"] == "train", "subject"]]
    )
    after = roc_auc_score(train["sex"] == "M", volumes.loc[train["subject"]])
    assert before > 0.8 and after < 0.6  # the training sexes no longer differ in size
    pd.testing.assert_frame_equal(matched_split, matched)  # holdout: split.tsv is fold 0
    # the size-only row fits on the unmatched training part, so it still shows what size alone gives
    unmatched = size_only_predictions(volumes, [plain])
    refit = size_only_predictions(volumes, [matched], SEX, fit_sets=("train", "unused"))
    np.testing.assert_allclose(refit["p_positive"], unmatched["p_positive"])


def test_kfold_matches_each_fold_and_tests_everyone_once(tmp_path):
    participants, table = write_inputs(tmp_path)
    cv, *folds = split(
        tmp_path, participants, "k", scheme="kfold", folds=3, n_val=10, match="volume_train", volumes=table
    )
    tested = pd.concat([f.loc[f["set"] == "test", "subject"] for f in folds])
    assert sorted(tested) == sorted(cv["subject"]) and not tested.duplicated().any()
    store = cv[["subject"]].assign(row=np.arange(len(cv)), set="cv", group=cv["sex"], age_bin="22-25", label=0)
    for k, fold in enumerate(folds):
        assert 0 < (fold["set"] == "unused").sum() < (fold["set"].isin(["train", "unused"])).sum()
        index = fold_index(store, fold, f"fold{k}.tsv")  # a store subject unused in one fold only is allowed
        assert (index["set"] == "unused").sum() == (fold["set"] == "unused").sum()


def test_volumes_that_do_not_overlap_stop_with_the_key(tmp_path):
    participants, table = write_inputs(tmp_path, ratio=1.5)
    with pytest.raises(InputError, match=r"config key 'split.match': volume matching keeps \d+ pairs .*regress_out"):
        split(tmp_path, participants, "x", counts=(150, 30, 120), match="volume_train", volumes=table)
    assert not (tmp_path / "x.tsv").exists()
    for match, volumes in (("volume_train", None), ("none", table), ("volumes", table)):
        with pytest.raises(ValueError, match="split.match"):
            split(tmp_path, participants, "y", counts=(150, 30, 120), match=match, volumes=volumes)
    assert not (tmp_path / "y.tsv").exists()


def toy(seed: int, signal: float, n: int = 600, features: int = 120) -> tuple[pd.DataFrame, pd.Series, np.ndarray]:
    """A fold (half train, 40% test) whose features all load on volume (sexes 1.5 SDs apart) plus ``signal`` SDs of
    a sex effect in a tenth of them: the over-parameterised case, where weighting a training set does not stop a
    reader from using size (benchmarks/size_controls.py --synthetic) and leaving subjects out does."""
    rng = np.random.default_rng(seed)
    label = np.arange(n) % 2
    z = 1.5 * (label - 0.5) + rng.normal(0, 1, n)
    x = z[:, None] * rng.normal(0, 1, features) + rng.normal(0, 1, (n, features))
    x[:, : features // 10] += signal * label[:, None]
    subjects = [f"s{i:03d}" for i in range(n)]
    sets = np.where(np.arange(n) < n // 2, "train", np.where(np.arange(n) < n * 3 // 5, "val", "test"))
    fold = pd.DataFrame({"subject": subjects, "sex": np.where(label == 1, "M", "F"), "set": sets})
    return fold, pd.Series(z, index=subjects), x


def reader_auc(fold: pd.DataFrame, x: np.ndarray) -> float:
    train, test = (fold["set"] == "train").to_numpy(), (fold["set"] == "test").to_numpy()
    label = (fold["sex"] == "M").to_numpy()
    model = LogisticRegression(C=0.1, max_iter=5000).fit(x[train], label[train])
    return roc_auc_score(label[test], model.decision_function(x[test]))


def test_a_reader_trained_on_the_matched_part_does_not_read_size_and_keeps_a_label_effect():
    raw, matched, kept = [], [], []
    for seed in range(6):
        fold, z, x = toy(seed, signal=0.0)
        raw.append(reader_auc(fold, x))
        matched.append(reader_auc(match_training_part(fold, z, SEX), x))
        fold, z, x = toy(seed, signal=0.8)
        kept.append(reader_auc(match_training_part(fold, z, SEX), x))
    # 240 test subjects: one AUC's CI half-width ~0.07; the caliper (0.2 SD) leaves a little size in the pairs
    assert min(raw) > 0.7 and np.mean(matched) < 0.6 and max(matched) < 0.68
    assert min(kept) > 0.85
