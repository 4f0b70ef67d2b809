"""The participants table: one row per subject with sex (M/F), age (years, may be unknown) and age bin.

Columns of results/cohort/participants.tsv: subject (no ``sub-`` prefix), sex, age, age_bin. The age bins are the
paper's (Table 1): 22-25, 26-30, 31-37. Rows are validated where they are used (`participant`), so that one bad
row stops only the jobs of that subject (with ``--keep-going`` the others finish).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from dmriscope.io import InputError, atomic_path

AGE_BINS = ("22-25", "26-30", "31-37")
AGE_BIN_EDGES = ((22, 25), (26, 30), (31, 37))
COLUMNS = ["subject", "sex", "age", "age_bin"]
SEXES = ("M", "F")


def age_bin_of(age: float) -> str:
    """The paper's age bin of an age in whole years (22-37); ValueError outside that range."""
    years = math.floor(age)
    for name, (low, high) in zip(AGE_BINS, AGE_BIN_EDGES):
        if low <= years <= high:
            return name
    raise ValueError(f"age {age} is outside the paper's range 22-37")


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


def read_participants(path: str | Path) -> pd.DataFrame:
    """Read a participants TSV (or CSV) as strings, without validating rows; normalises the subject column."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: participants table not found")
    frame = pd.read_csv(path, sep="," if path.suffix == ".csv" else "\t", dtype=str, keep_default_na=False)
    if "subject" not in frame.columns:
        raise InputError(f"{path}: participants table has no 'subject' column")
    frame["subject"] = frame["subject"].str.strip().str.removeprefix("sub-")
    for column in COLUMNS:
        if column not in frame.columns:
            frame[column] = ""
    return frame


def participant(frame: pd.DataFrame, subject: str, source: str | Path = "participants.tsv") -> dict:
    """The validated row of one subject: sex M/F, age (float or None) and age bin; InputError naming the subject."""
    rows = frame[frame["subject"] == subject]
    if len(rows) != 1:
        raise InputError(f"{source}: subject {subject} has {len(rows)} rows (expected 1)")
    row = rows.iloc[0]
    sex = str(row["sex"]).strip().upper()
    if sex not in SEXES:
        raise InputError(f"{source}: subject {subject} has sex {row['sex']!r}, expected M or F")
    age_text = str(row["age"]).strip()
    age = None
    if age_text and age_text.lower() != "nan":
        try:
            age = float(age_text)
        except ValueError:
            raise InputError(f"{source}: subject {subject} has a non-numeric age {age_text!r}") from None
    bin_text = str(row["age_bin"]).strip()
    if bin_text and bin_text.lower() != "nan":
        if bin_text not in AGE_BINS:
            raise InputError(f"{source}: subject {subject} has age bin {bin_text!r}, expected one of {AGE_BINS}")
        age_bin = bin_text
    elif age is not None:
        try:
            age_bin = age_bin_of(age)
        except ValueError as exc:
            raise InputError(f"{source}: subject {subject}: {exc}") from None
    else:
        raise InputError(f"{source}: subject {subject} has no age and no age bin")
    return {"subject": subject, "sex": sex, "age": age, "age_bin": age_bin}


def validated(frame: pd.DataFrame, source: str | Path) -> pd.DataFrame:
    """Every row validated (the first bad row raises); the result has typed columns."""
    rows = [participant(frame, subject, source) for subject in frame["subject"]]
    return pd.DataFrame(rows, columns=COLUMNS)


def write_participants(frame: pd.DataFrame, path: str | Path) -> None:
    """Write the table atomically as TSV with the standard columns (missing ages left empty)."""
    with atomic_path(path) as tmp:
        frame[COLUMNS].to_csv(tmp, sep="\t", index=False, na_rep="")
