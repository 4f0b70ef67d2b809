"""Train/validation/test split stratified by label x age bin, and the paper's Table 1.

Each stratum (the label - sex by default - x age bin, or x the columns of config ``split.stratify``) is shuffled
with the seed and cut so that every set has (as nearly as integer counts allow, by the largest-remainder method)
the cohort's label and age distribution. Subjects beyond
n_train + n_val + n_test are left out and listed with set ``unused``. The split's SHA-256 is written beside it so
every model records which split it was trained on.

Two volume-matched designs (config ``split.match``): ``volume`` splits only the male-female pairs matched 1:1 on
native brain volume (every set matched; the unmatched subjects are unused); ``volume_train`` splits everyone and
then matches only each fold's training part (its unmatched training subjects are unused in that fold), so that a
classifier cannot learn size from its training subjects while validation and test keep every subject.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from dmriscope.cohort.participants import AGE_BIN_EDGES, read_participants, validated
from dmriscope.io import InputError, atomic_path
from dmriscope.label import SEX, Label

log = logging.getLogger(__name__)
SETS = ("train", "val", "test")
UNUSED = "unused"  # the set of a subject a split, or one fold of it, leaves out
MATCHES = ("none", "volume", "volume_train")  # config split.match
CV = "cv"  # the set of every subject of a kfold split in split.tsv (its fold tables give train/val/test)


def _largest_remainder(target: int, weights: np.ndarray, capacity: np.ndarray) -> np.ndarray:
    """Integer counts summing to `target`, proportional to `weights`, never above `capacity`."""
    if target > capacity.sum():
        raise ValueError(f"cannot place {target} subjects in strata holding {capacity.sum()}")
    exact = target * weights / weights.sum()
    counts = np.minimum(np.floor(exact).astype(int), capacity)
    order = np.argsort(-(exact - np.floor(exact)), kind="stable")
    while counts.sum() < target:
        for k in order:
            if counts.sum() == target:
                break
            if counts[k] < capacity[k]:
                counts[k] += 1
    return counts


def stratified_split(
    participants: pd.DataFrame, counts: Sequence[int], seed: int, strata: Sequence[str] = ("sex", "age_bin")
) -> pd.DataFrame:
    """Assign each subject to train/val/test (or unused); stratified by ``strata`` columns, seeded, deterministic.

    Args:
        participants: validated table with columns subject, the label's and ``strata``.
        counts: (n_train, n_val, n_test), summing to at most the cohort size.
        seed: shuffles each stratum; the same seed and cohort always give the same split.
        strata: the label's column first, then the stratification columns (default sex x age bin).
    """
    n_total = len(participants)
    if sum(counts) > n_total:
        raise ValueError(f"split counts {tuple(counts)} exceed the cohort ({n_total})")
    frame = participants.sort_values("subject").reset_index(drop=True)
    strata = sorted(frame.groupby(list(strata)).groups.items())
    sizes = np.array([len(idx) for _, idx in strata])
    remaining = sizes.copy()
    per_set = {}
    # test and validation first (the small sets must carry the distribution), then train; the rest is unused
    for name, target in (("test", counts[2]), ("val", counts[1]), ("train", counts[0])):
        per_set[name] = _largest_remainder(target, sizes.astype(float), remaining)
        remaining = remaining - per_set[name]
    rng = np.random.default_rng(seed)
    assignment = pd.Series(UNUSED, index=frame.index)
    for k, (_, idx) in enumerate(strata):
        order = rng.permutation(np.asarray(sorted(idx)))
        start = 0
        for name in ("test", "val", "train"):
            take = per_set[name][k]
            assignment.loc[order[start : start + take]] = name
            start += take
    frame["set"] = assignment
    return frame


MIN_MATCHED_PAIRS = 10  # split.match volume_train: fewer matched training pairs cannot train a classifier


def match_training_part(fold: pd.DataFrame, volumes: pd.Series, label: Label, where: str = "") -> pd.DataFrame:
    """``fold`` with its training subjects outside a 1:1 volume matching of the training part set ``unused``
    (`dmriscope.brain_size.volume_matched_subjects`); validation and test subjects untouched."""
    from dmriscope.brain_size import volume_matched_subjects

    train = fold[fold["set"] == "train"]
    keep = set(volume_matched_subjects(train, volumes, label=label))
    if len(keep) < 2 * MIN_MATCHED_PAIRS:
        raise InputError(
            f"config key 'split.match': {where}volume matching keeps {len(keep) // 2} pairs of {len(train)} "
            f"training subjects (fewer than {MIN_MATCHED_PAIRS}): the groups' brain volumes barely overlap, so "
            "matching cannot control size here; use tensors.regress_out (README, 'Brain size')"
        )
    out = fold.copy()
    out.loc[(out["set"] == "train") & ~out["subject"].isin(keep), "set"] = UNUSED
    return out


def check_split(split: pd.DataFrame, label: Label = SEX) -> None:
    """No subject twice; both groups of the label in every set. ValueError otherwise."""
    if split["subject"].duplicated().any():
        raise ValueError("a subject appears twice in the split")
    for name in SETS:
        present = set(split.loc[split["set"] == name, label.column])
        if present != set(label.values):
            raise ValueError(f"set '{name}' does not contain {label.both} (has {sorted(present)})")


def kfold_split(
    participants: pd.DataFrame, folds: int, n_val: int, seed: int, strata: Sequence[str] = ("sex", "age_bin")
) -> tuple[pd.DataFrame, list[pd.DataFrame]]:
    """Stratified k-fold cross-validation: every subject tested once, by the fold whose model never saw it.

    Test folds come from scikit-learn's ``StratifiedKFold`` (shuffled with ``seed``) over the ``strata`` (label x
    age bin); within each fold's training part, ``n_val`` subjects are held out for model selection by
    `stratified_split` (seeded ``seed + 1 + fold``). Returns the split (``set`` = ``cv``, ``fold`` = the subject's
    test fold) and, per fold, the participants with ``set`` train / val / test.
    """
    import warnings

    from sklearn.model_selection import StratifiedKFold

    frame = participants.sort_values("subject").reset_index(drop=True)
    keys = frame[list(strata)].astype(str).agg("_".join, axis=1).to_numpy()
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    frame["set"], frame["fold"] = CV, -1
    with warnings.catch_warnings(record=True) as caught:  # a stratum smaller than k: folds differ in it by one
        warnings.simplefilter("always")
        parts = list(splitter.split(frame, keys))
    for warning in caught:
        log.warning("kfold: %s", warning.message)
    per_fold = []
    for k, (rest, test) in enumerate(parts):
        frame.loc[test, "fold"] = k
        inner = stratified_split(
            frame.loc[rest].drop(columns=["set", "fold"]), (len(rest) - n_val, n_val, 0), seed + 1 + k, strata
        )
        fold = pd.concat([inner, frame.loc[test].drop(columns="fold").assign(set="test")])
        per_fold.append(fold.sort_values("subject").reset_index(drop=True))
    return frame, per_fold


def holdout_split(
    participants: pd.DataFrame, counts: Sequence[int], seed: int, strata: Sequence[str] = ("sex", "age_bin")
) -> tuple[pd.DataFrame, list[pd.DataFrame]]:
    """The paper's protocol as the one-fold case: the split, and itself as fold 0."""
    split = stratified_split(participants, counts, seed, strata)
    return split, [split]


def split_cohort_files(
    *,
    participants: str,
    split_path: str,
    digest_path: str,
    fold_paths: Sequence[str],
    scheme: str = "holdout",
    counts: Sequence[int] = (),
    n_val: int = 0,
    seed: int = 0,
    match: str = "none",
    volumes: str | None = None,
    label: Mapping | None = None,
    age_bins: Sequence[Sequence[int]] = AGE_BIN_EDGES,
    stratify: Sequence[str] = ("age_bin",),
) -> None:
    """Read and validate participants.tsv, split (holdout: ``counts``; kfold: ``len(fold_paths)`` folds, ``n_val``
    inner validation subjects), check every fold, write split.tsv, one train/val/test table per fold and the SHA-256
    of them all (models record it). ``match`` (config ``split.match``) with ``volumes`` (brain_volumes.tsv):
    ``volume``, only the volume-matched pairs of the two groups are split, the other subjects are ``unused``;
    ``volume_train``, each fold's training part is matched instead (`match_training_part`). ``label`` (config
    section ``label``; default sex) and ``stratify`` (config ``split.stratify``) set the strata."""
    if match not in MATCHES or (match != "none") != (volumes is not None):
        raise ValueError(
            f"split.match {match!r} with volumes {volumes!r}: expected one of {MATCHES}, volumes with a match"
        )
    group = Label.from_config(label)
    strata = (group.column, *stratify)
    table, left_out = _cohort_table(participants, group, age_bins, stratify, volumes if match == "volume" else None)
    if scheme == "kfold":
        split, per_fold = kfold_split(table, len(fold_paths), n_val, seed, strata)
    else:
        try:
            split, per_fold = holdout_split(table, counts, seed, strata)
        except ValueError as exc:
            matched = " after volume matching" if match == "volume" else ""
            hint = "give smaller counts or use split.scheme kfold"
            raise InputError(f"config key 'split': {exc}{matched}; {hint}") from None
    if match == "volume_train":
        from dmriscope.brain_size import read_volumes

        volume_table = read_volumes(volumes)
        per_fold = [
            match_training_part(fold, volume_table, group, _fold_label(scheme, k)) for k, fold in enumerate(per_fold)
        ]
        split = split if scheme == "kfold" else per_fold[0]
    if len(per_fold) != len(fold_paths):
        raise InputError(f"config key 'split.scheme': {scheme} gives {len(per_fold)} folds, {len(fold_paths)} asked")
    if len(left_out):
        unused = left_out.assign(set=UNUSED)
        split = pd.concat([split, unused.assign(fold=-1) if "fold" in split else unused]).sort_values("subject")
        per_fold = [pd.concat([f, unused]).sort_values("subject").reset_index(drop=True) for f in per_fold]
    for k, fold in enumerate(per_fold):
        try:
            check_split(fold, group)
        except ValueError as exc:
            raise InputError(
                f"config key 'split': {_fold_label(scheme, k)}{exc}; use larger n_val/n_test or fewer folds"
            ) from None
    digest = hashlib.sha256()
    for frame, path in ((split, split_path), *zip(per_fold, fold_paths, strict=True)):
        with atomic_path(path) as tmp:
            frame.to_csv(tmp, sep="\t", index=False, na_rep="")
            digest.update(Path(tmp).read_bytes())
    with atomic_path(digest_path) as tmp:
        Path(tmp).write_text(f"{digest.hexdigest()}  {Path(split_path).name}\n")
    log.info("split %s (%s): %s (sha256 %s)", split_path, scheme, _sizes(per_fold), digest.hexdigest()[:12])


def _fold_label(scheme: str, k: int) -> str:
    """'fold k: ' before a message about fold k of a kfold split; nothing for a holdout split's one fold."""
    return f"fold {k}: " if scheme == "kfold" else ""


def _cohort_table(
    participants: str,
    label: Label,
    age_bins: Sequence[Sequence[int]],
    stratify: Sequence[str],
    match_volumes: str | None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The validated participants to split and those left out by volume matching; InputError for one group only."""
    table = validated(read_participants(participants, label), participants, label, age_bins, stratify)
    left_out = table.iloc[:0]
    if match_volumes is not None:
        from dmriscope.brain_size import read_volumes, volume_matched_subjects

        keep = set(volume_matched_subjects(table, read_volumes(match_volumes), label=label))
        table, left_out = table[table["subject"].isin(keep)], table[~table["subject"].isin(keep)]
    present = sorted(set(table[label.column]))
    if len(present) < 2:
        raise InputError(
            f"{participants}: the cohort has one class only ({len(table)} subjects, all {label.column} "
            f"{present[0]!r}); a classifier needs subjects of {label.both}"
        )
    return table, left_out


def _sizes(per_fold: Sequence[pd.DataFrame]) -> str:
    return "; ".join(
        f"fold {k}: " + ", ".join(f"{n} {s}" for s, n in f["set"].value_counts().items())
        for k, f in enumerate(per_fold)
    )


def _age_bins(split: pd.DataFrame) -> list[str]:
    """The age bins present, youngest first ("22-25" before "26-30")."""
    return sorted(split["age_bin"].astype(str).unique(), key=lambda b: (float(b.split("-")[0]), b))


def set_groups(
    split: pd.DataFrame, volumes: pd.Series | None = None
) -> tuple[pd.DataFrame, list[tuple[str, pd.DataFrame]]]:
    """The used subjects (with ``volume`` in cm³ when ``volumes`` are given) and their sets (train/val/test, or the
    test folds of a kfold split)."""
    kfold = "fold" in split.columns and (split["set"] == CV).any()
    used = split[split["set"].isin((CV,) if kfold else SETS)].copy()
    if volumes is not None:
        used["volume"] = volumes.reindex(used["subject"]).to_numpy() / 1000.0
    groups = (
        [(f"fold {k + 1}", used[used["fold"] == k]) for k in sorted(used["fold"].unique())]
        if kfold
        else [(name, used[used["set"] == name]) for name in SETS]
    )
    return used, groups


def table1(split: pd.DataFrame, label: Label = SEX) -> pd.DataFrame:
    """The paper's Table 1: subjects per age bin (rows, plus Total) and group of the label (male/female by default)
    within each set (columns, plus All). A kfold split (``set`` = ``cv``) has one column pair per test fold."""
    used, groups = set_groups(split)
    bins = _age_bins(used)
    columns = {}
    for name, part in (*groups, ("all", used)):
        for value in label.values:
            counts = part[part[label.column] == value]["age_bin"].astype(str).value_counts()
            columns[f"{name} {label.name_of(value)}"] = [int(counts.get(b, 0)) for b in bins]
    frame = pd.DataFrame(columns, index=[b.replace("-", "–") for b in bins])
    frame.loc["Total"] = frame.sum()
    frame.index.name = "age"
    return frame


def volume_table(split: pd.DataFrame, volumes: pd.Series, label: Label = SEX) -> pd.DataFrame:
    """Table 1b: brain volume (cm^3) mean ± SD by group in each set (or test fold) and overall, and their ratio."""
    used, groups = set_groups(split, volumes)
    pos, neg = label.names
    rows = []
    for name, part in (*groups, ("all", used)):
        a = part.loc[part[label.column] == label.positive, "volume"]
        b = part.loc[part[label.column] == label.negative, "volume"]
        rows.append({
            "set": name,
            f"{pos} cm³": f"{a.mean():.0f} ± {a.std():.0f}",
            f"{neg} cm³": f"{b.mean():.0f} ± {b.std():.0f}",
            f"{pos} / {neg}": round(a.mean() / b.mean(), 3),
        })  # fmt: skip
    return pd.DataFrame(rows)
