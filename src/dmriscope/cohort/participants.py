"""The participants table: one row per subject with the label (sex M/F by default), age (years, may be unknown)
and age bin.

Columns of results/cohort/participants.tsv: subject (no ``sub-`` prefix), the label's column (``sex``, or e.g.
``group``), any split-stratification columns, age, age_bin. The age bins are the paper's (Table 1) unless config
``cohort.age_bins`` gives others: 22-25, 26-30, 31-37. Rows are validated where they are used (`participant`, by
`participant_row.validate_row`), so that one bad row stops only the jobs of that subject (with ``--keep-going`` the
others finish).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from dmriscope.cohort.participant_row import AGE_BIN_EDGES, AGE_BINS, validate_row
from dmriscope.io import InputError, atomic_path
from dmriscope.label import SEX, Label

COLUMNS = ["subject", "sex", "age", "age_bin"]  # the default (sex) label's columns: `columns_of`


def columns_of(label: Label = SEX, extra: Sequence[str] = ()) -> list[str]:
    """participants.tsv's columns: subject, the label's column, ``extra`` (stratification) columns, age, age_bin."""
    fixed = ["subject", label.column, "age", "age_bin"]
    return [*fixed[:2], *(c for c in extra if c not in fixed), *fixed[2:]]


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
    """The validated row of one subject (`participant_row.validate_row`); InputError naming the subject."""
    rows = frame[frame["subject"] == subject]
    if len(rows) != 1:
        raise InputError(f"{source}: subject {subject} has {len(rows)} rows (expected 1)")
    return validate_row(rows.iloc[0].to_dict(), subject, source, label, age_bins, extra)


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
