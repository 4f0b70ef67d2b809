"""The participants table: one row per subject with the label (sex M/F by default), age (years, may be unknown)
and age bin.

Columns of results/cohort/participants.tsv: subject (no ``sub-`` prefix), the label's column (``sex``, or e.g.
``group``), any split-stratification columns, age, age_bin. The age bins are the paper's (Table 1) unless config
``cohort.age_bins`` gives others: 22-25, 26-30, 31-37. Rows are validated where they are used (`participant`), so
that one bad row stops only the jobs of that subject (with ``--keep-going`` the others finish).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from dmriscope.io import InputError, atomic_path
from dmriscope.label import SEX, Label

AGE_BINS = ("22-25", "26-30", "31-37")
AGE_BIN_EDGES = ((22, 25), (26, 30), (31, 37))
COLUMNS = ["subject", "sex", "age", "age_bin"]  # the default (sex) label's columns: `columns_of`


def bin_names(edges: Sequence[Sequence[int]]) -> tuple[str, ...]:
    """The names of age bins [low, high]: "low-high"."""
    return tuple(f"{low}-{high}" for low, high in edges)


def columns_of(label: Label = SEX, extra: Sequence[str] = ()) -> list[str]:
    """participants.tsv's columns: subject, the label's column, ``extra`` (stratification) columns, age, age_bin."""
    fixed = ["subject", label.column, "age", "age_bin"]
    return [*fixed[:2], *(c for c in extra if c not in fixed), *fixed[2:]]


def age_bin_of(age: float, edges: Sequence[Sequence[int]] = AGE_BIN_EDGES) -> str:
    """The age bin of an age in whole years (the paper's 22-25, 26-30, 31-37 by default); ValueError outside them."""
    years = math.floor(age)
    for name, (low, high) in zip(bin_names(edges), edges):
        if low <= years <= high:
            return name
    raise ValueError(f"age {age} is outside the age bins {', '.join(bin_names(edges))}")


def draw_demographics(
    subjects: Sequence[str], seed: int, male_fraction: float, age_bin_fractions: Mapping[str, Sequence[float]]
) -> pd.DataFrame:
    """Sex and age for each subject, drawn like the paper's Table 1 (seeded; the same seed gives the same cohort).

    Sex is Bernoulli(male_fraction); the age bin is drawn from that sex's bin fractions and the age uniformly
    (in whole years) within the bin.
    """
    rng = np.random.default_rng(seed)
    rows = []
    for subject in subjects:
        sex = "M" if rng.random() < male_fraction else "F"
        fractions = np.asarray(age_bin_fractions[sex], dtype=float)
        k = int(rng.choice(len(AGE_BINS), p=fractions / fractions.sum()))
        low, high = AGE_BIN_EDGES[k]
        age = int(rng.integers(low, high + 1))
        rows.append({"subject": subject, "sex": sex, "age": age, "age_bin": AGE_BINS[k]})
    return pd.DataFrame(rows, columns=COLUMNS)


def read_participants(path: str | Path, label: Label = SEX) -> pd.DataFrame:
    """Read a participants TSV (or CSV) as strings, without validating rows; normalises the subject column."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: participants table not found")
    frame = pd.read_csv(path, sep="," if path.suffix == ".csv" else "\t", dtype=str, keep_default_na=False)
    if "subject" not in frame.columns:
        raise InputError(f"{path}: participants table has no 'subject' column")
    frame["subject"] = frame["subject"].str.strip().str.removeprefix("sub-")
    return with_columns(frame, label)


def with_columns(frame: pd.DataFrame, label: Label = SEX) -> pd.DataFrame:
    """``frame`` with every column of `columns_of` (``label``) present, those it lacks empty (validated later)."""
    for column in columns_of(label):
        if column not in frame.columns:
            frame[column] = ""
    return frame


def participant(
    frame: pd.DataFrame,
    subject: str,
    source: str | Path = "participants.tsv",
    label: Label = SEX,
    age_bins: Sequence[Sequence[int]] = AGE_BIN_EDGES,
    extra: Sequence[str] = (),
) -> dict:
    """The validated row of one subject: the label's value (sex M/F by default), the ``extra`` columns, age (float
    or None) and age bin; InputError naming the subject."""
    rows = frame[frame["subject"] == subject]
    if len(rows) != 1:
        raise InputError(f"{source}: subject {subject} has {len(rows)} rows (expected 1)")
    row = rows.iloc[0]
    value = label.normalise(row[label.column])
    if value is None:
        raise InputError(
            f"{source}: subject {subject} has {label.column} {row[label.column]!r}, "
            f"expected {label.positive} or {label.negative}"
        )
    out = {"subject": subject, label.column: value}
    for column in extra:
        if column == "age_bin":
            continue
        if column not in frame.columns or not str(row[column]).strip():
            raise InputError(f"{source}: subject {subject} has no {column!r} (config key 'split.stratify')")
        out[column] = str(row[column]).strip()
    return {**out, **_age(row, subject, source, age_bins)}


def _age(row: pd.Series, subject: str, source: str | Path, edges: Sequence[Sequence[int]]) -> dict:
    """The validated age (float or None) and age bin of one participants row."""
    names = bin_names(edges)
    age_text = str(row["age"]).strip()
    age = None
    if age_text and age_text.lower() != "nan":
        try:
            age = float(age_text)
        except ValueError:
            raise InputError(f"{source}: subject {subject} has a non-numeric age {age_text!r}") from None
    bin_text = str(row["age_bin"]).strip()
    if bin_text and bin_text.lower() != "nan":
        if bin_text not in names:
            raise InputError(f"{source}: subject {subject} has age bin {bin_text!r}, expected one of {names}")
        age_bin = bin_text
    elif age is not None:
        try:
            age_bin = age_bin_of(age, edges)
        except ValueError as exc:
            raise InputError(f"{source}: subject {subject}: {exc} (config key 'cohort.age_bins')") from None
    else:
        raise InputError(f"{source}: subject {subject} has no age and no age bin")
    return {"age": age, "age_bin": age_bin}


def validated(
    frame: pd.DataFrame,
    source: str | Path,
    label: Label = SEX,
    age_bins: Sequence[Sequence[int]] = AGE_BIN_EDGES,
    extra: Sequence[str] = (),
) -> pd.DataFrame:
    """Every row validated (the first bad row raises); the result has typed columns."""
    rows = [participant(frame, subject, source, label, age_bins, extra) for subject in frame["subject"]]
    return pd.DataFrame(rows, columns=columns_of(label, extra))


def write_participants(frame: pd.DataFrame, path: str | Path, label: Label = SEX, extra: Sequence[str] = ()) -> None:
    """Write the table atomically as TSV with the standard columns (missing ages left empty)."""
    with atomic_path(path) as tmp:
        frame[columns_of(label, extra)].to_csv(tmp, sep="\t", index=False, na_rep="")
