"""The split is deterministic, stratified by sex x age bin, leak-free, and Table 1 counts it correctly."""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd
import pytest

from dmriscope.cohort.participants import AGE_BINS, draw_demographics, write_participants
from dmriscope.io import InputError
from dmriscope.label import Label
from dmriscope.split import check_split, kfold_split, split_cohort_files, stratified_split, table1

FRACTIONS = {"M": [0.32, 0.46, 0.22], "F": [0.19, 0.37, 0.44]}


def cohort(n: int, seed: int = 0) -> pd.DataFrame:
    return draw_demographics([f"s{i:04d}" for i in range(n)], seed, 471 / 1031, FRACTIONS)


def test_paper_counts_and_no_leak():
    split = stratified_split(cohort(1031), (831, 100, 100), seed=3)
    assert split["set"].value_counts().to_dict() == {"train": 831, "val": 100, "test": 100}
    assert split["subject"].is_unique
    check_split(split)


def test_strata_proportions_match_within_one():
    people = cohort(1031)
    split = stratified_split(people, (831, 100, 100), seed=3)
    share = people.groupby(["sex", "age_bin"]).size() / len(people)
    for name, n in (("val", 100), ("test", 100), ("train", 831)):
        got = split[split["set"] == name].groupby(["sex", "age_bin"]).size()
        expected = share * n
        # largest-remainder rounding: val/test strata within one subject of their exact share; train takes the
        # remainder of both, so within two
        tolerance = 2.0 if name == "train" else 1.0
        assert np.all(np.abs(got.reindex(expected.index, fill_value=0) - expected) < tolerance + 1e-9), name


def test_deterministic_and_seed_dependent():
    people = cohort(200)
    a = stratified_split(people, (140, 30, 30), seed=5)
    b = stratified_split(people.sample(frac=1, random_state=1), (140, 30, 30), seed=5)  # row order must not matter
    c = stratified_split(people, (140, 30, 30), seed=6)
    assert a.set_index("subject")["set"].equals(b.set_index("subject")["set"])
    assert not a.set_index("subject")["set"].equals(c.set_index("subject")["set"])


def test_subset_leaves_rest_unused():
    split = stratified_split(cohort(100), (50, 10, 10), seed=1)
    assert (split["set"] == "unused").sum() == 30


def test_counts_larger_than_cohort_raise():
    with pytest.raises(ValueError, match="exceed"):
        stratified_split(cohort(20), (15, 5, 5), seed=1)


def test_set_without_both_sexes_is_reported(tmp_path):
    people = cohort(30)
    path = tmp_path / "participants.tsv"
    write_participants(people, path)
    with pytest.raises(InputError, match="both sexes"):
        run_split(tmp_path, path, (28, 1, 1), 0)
    assert not (tmp_path / "s.tsv").exists()


def test_one_class_cohort_is_named_as_such(tmp_path):
    """An all-female cohort is not a split-size problem: the message names the file and the one class."""
    people = cohort(40)
    people["sex"] = "F"
    path = tmp_path / "participants.tsv"
    write_participants(people, path)
    with pytest.raises(InputError, match="one class only") as info:
        run_split(tmp_path, path, (30, 5, 5), 0)
    assert str(path) in str(info.value) and "n_val" not in str(info.value)
    assert not (tmp_path / "s.tsv").exists()


def run_split(tmp_path, participants, counts=(), seed=0, scheme="holdout", folds=1, n_val=0):
    split_cohort_files(
        participants=str(participants),
        split_path=str(tmp_path / "s.tsv"),
        digest_path=str(tmp_path / "s.sha256"),
        fold_paths=[str(tmp_path / f"fold{k}.tsv") for k in range(folds)],
        scheme=scheme,
        counts=counts,
        n_val=n_val,
        seed=seed,
    )


def test_files_and_digest(tmp_path):
    path = tmp_path / "participants.tsv"
    write_participants(cohort(60), path)
    run_split(tmp_path, path, (40, 10, 10), 2)
    out, fold, digest = tmp_path / "s.tsv", tmp_path / "fold0.tsv", tmp_path / "s.sha256"
    assert digest.read_text().split()[0] == hashlib.sha256(out.read_bytes() + fold.read_bytes()).hexdigest()
    assert set(pd.read_csv(out, sep="\t")["set"]) == {"train", "val", "test"}
    assert fold.read_bytes() == out.read_bytes()  # holdout: the split is its one fold


def test_table1_counts():
    split = stratified_split(cohort(300), (200, 50, 50), seed=0)
    table = table1(split)
    assert table.loc["Total", ["all male", "all female"]].sum() == 300
    assert table.loc["Total"].drop(["all male", "all female"]).sum() == 300
    for name in ("train", "val", "test"):
        part = split[split["set"] == name]
        males = part[part["sex"] == "M"]
        assert table.loc["Total", f"{name} male"] == len(males)
        for b in AGE_BINS:
            assert table.loc[b.replace("-", "–"), f"{name} male"] == (males["age_bin"] == b).sum()


def test_kfold_tests_every_subject_once_with_inner_validation():
    people = cohort(240, seed=4)
    split, per_fold = kfold_split(people, 5, 20, seed=9)
    assert set(split["set"]) == {"cv"} and sorted(split["fold"].unique()) == [0, 1, 2, 3, 4]
    tested = pd.concat([f.loc[f["set"] == "test", "subject"] for f in per_fold])
    assert tested.is_unique and set(tested) == set(people["subject"])  # every subject tested exactly once
    for k, fold in enumerate(per_fold):
        check_split(fold)
        assert set(fold.loc[fold["set"] == "test", "subject"]) == set(split.loc[split["fold"] == k, "subject"])
        assert (fold["set"] == "val").sum() == 20 and (fold["set"] == "test").sum() in (48,)
        assert fold["subject"].is_unique and len(fold) == 240
    # stratified: each fold's test part holds every sex x age stratum within one subject of its share
    share = people.groupby(["sex", "age_bin"]).size() / 5
    for k in range(5):
        got = split[split["fold"] == k].groupby(["sex", "age_bin"]).size().reindex(share.index, fill_value=0)
        assert np.all(np.abs(got - share) <= 1.0), k


def test_kfold_is_seeded():
    people = cohort(100, seed=1)
    first, folds_a = kfold_split(people, 4, 8, seed=3)
    again, folds_b = kfold_split(people, 4, 8, seed=3)
    other, _ = kfold_split(people, 4, 8, seed=4)
    assert first.equals(again) and all(a.equals(b) for a, b in zip(folds_a, folds_b))
    assert not first["fold"].equals(other["fold"])


def test_kfold_files_and_table1(tmp_path):
    path = tmp_path / "participants.tsv"
    write_participants(cohort(60, seed=2), path)
    run_split(tmp_path, path, scheme="kfold", folds=3, n_val=6, seed=5)
    split = pd.read_csv(tmp_path / "s.tsv", sep="\t", dtype={"subject": str})
    table = table1(split)
    assert [c for c in table.columns if c.endswith(" male")] == [
        "fold 1 male",
        "fold 2 male",
        "fold 3 male",
        "all male",
    ]
    assert table.loc["Total"].drop(["all male", "all female"]).sum() == 60
    for k in range(3):
        fold = pd.read_csv(tmp_path / f"fold{k}.tsv", sep="\t", dtype={"subject": str})
        males = fold[(fold["set"] == "test") & (fold["sex"] == "M")]
        assert table.loc["Total", f"fold {k + 1} male"] == len(males)


def test_kfold_fold_without_both_sexes_names_the_fold(tmp_path):
    people = cohort(40, seed=0)
    people["sex"] = ["M"] * 3 + ["F"] * 37  # 3 males over 4 folds: one fold's test part has none
    path = tmp_path / "participants.tsv"
    write_participants(people, path)
    with pytest.raises(InputError, match=r"fold \d: set '(val|test)' does not contain both sexes"):
        run_split(tmp_path, path, scheme="kfold", folds=4, n_val=4)
    assert not (tmp_path / "s.tsv").exists()


def test_volume_table_by_sex_and_set():
    from dmriscope.split import volume_table

    split = stratified_split(cohort(60, seed=3), (40, 10, 10), seed=0)
    volumes = pd.Series(np.where(split["sex"] == "M", 1.6e6, 1.4e6) + np.arange(60) * 10.0, index=split["subject"])
    table = volume_table(split, volumes).set_index("set")
    assert list(table.index) == ["train", "val", "test", "all"]
    males = volumes[split.loc[split["sex"] == "M", "subject"]] / 1000
    assert table.loc["all", "male cm³"] == f"{males.mean():.0f} ± {males.std():.0f}"
    females = volumes[split.loc[(split["sex"] == "F") & (split["set"] == "test"), "subject"]] / 1000
    assert table.loc["test", "female cm³"] == f"{females.mean():.0f} ± {females.std():.0f}"
    assert 1.1 < table.loc["all", "male / female"] < 1.2


def test_any_label_and_extra_strata(tmp_path):
    """label.column group (patient/control), strata label x age bin x site, bins from cohort.age_bins."""
    rng = np.random.default_rng(4)
    n = 120
    people = pd.DataFrame({
        "subject": [f"p{i:03d}" for i in range(n)],
        "group": rng.choice(["patient", "control", "Patient"], n, p=[0.3, 0.5, 0.2]),
        "site": rng.choice(["A", "B"], n),
        "age": rng.integers(60, 80, n),
        "age_bin": "",
    })  # fmt: skip
    path = tmp_path / "participants.tsv"
    people.to_csv(path, sep="\t", index=False)
    label = {"column": "group", "positive": "patient", "negative": "control"}
    split_cohort_files(
        participants=str(path), split_path=str(tmp_path / "s.tsv"), digest_path=str(tmp_path / "s.sha256"),
        fold_paths=[str(tmp_path / "fold0.tsv")], counts=(60, 20, 40), seed=0, label=label,
        age_bins=[[60, 69], [70, 79]], stratify=["age_bin", "site"],
    )  # fmt: skip
    split = pd.read_csv(tmp_path / "s.tsv", sep="\t", dtype=str)
    assert split.columns.tolist() == ["subject", "group", "site", "age", "age_bin", "set"]
    assert set(split["group"]) == {"patient", "control"} and set(split["age_bin"]) == {"60-69", "70-79"}
    share = split.groupby(["group", "age_bin", "site"]).size() / n
    test = split[split["set"] == "test"].groupby(["group", "age_bin", "site"]).size().reindex(share.index, fill_value=0)
    assert (np.abs(test - share * 40) <= 1).all()  # every stratum of label x age bin x site carried into test
    frame = table1(split.assign(set=split["set"]), Label.from_config(label))
    assert list(frame.columns[:2]) == ["train patient", "train control"] and list(frame.index) == [
        "60–69",
        "70–79",
        "Total",
    ]


def test_a_stratify_column_missing_names_subject_and_key(tmp_path):
    path = tmp_path / "participants.tsv"
    write_participants(cohort(30), path)
    with pytest.raises(InputError, match=r"subject s0000 has no 'site' \(config key 'split.stratify'\)"):
        split_cohort_files(participants=str(path), split_path=str(tmp_path / "s.tsv"),
                           digest_path=str(tmp_path / "d"), fold_paths=[str(tmp_path / "f0.tsv")],
                           counts=(20, 5, 5), stratify=["age_bin", "site"])  # fmt: skip
