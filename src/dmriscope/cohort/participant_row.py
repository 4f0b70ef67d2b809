"""One participant's row, read and validated without pandas: the age bins, the row's checks, and a reader for the
per-subject jobs.

`dmriscope.cohort.participants` builds and writes whole tables with pandas; a job that needs one subject's sex and
age (synthesize_subject, 240 jobs on the default cohort) reads its row here with the csv module instead, which
spares each job pandas' import (measured in README, "Benchmarks"). Both paths validate a row with
`validate_row`, so they accept and reject the same tables (tests/test_participants.py).
"""

from __future__ import annotations

import csv
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

from dmriscope.io import InputError
from dmriscope.label import SEX, Label

AGE_BINS = ("22-25", "26-30", "31-37")
AGE_BIN_EDGES = ((22, 25), (26, 30), (31, 37))


def bin_names(edges: Sequence[Sequence[int]]) -> tuple[str, ...]:
    """The names of age bins [low, high]: "low-high"."""
    return tuple(f"{low}-{high}" for low, high in edges)


def age_bin_of(age: float, edges: Sequence[Sequence[int]] = AGE_BIN_EDGES) -> str:
    """The age bin of an age in whole years (the paper's 22-25, 26-30, 31-37 by default); ValueError outside them."""
    years = math.floor(age)
    for name, (low, high) in zip(bin_names(edges), edges):
        if low <= years <= high:
            return name
    raise ValueError(f"age {age} is outside the age bins {', '.join(bin_names(edges))}")


def validate_row(
    row: Mapping[str, object],
    subject: str,
    source: str | Path = "participants.tsv",
    label: Label = SEX,
    age_bins: Sequence[Sequence[int]] = AGE_BIN_EDGES,
    extra: Sequence[str] = (),
) -> dict:
    """The validated row of one subject: the label's value (sex M/F by default), the ``extra`` columns, age (float
    or None) and age bin; InputError naming the subject. A column the row lacks counts as empty."""
    raw = row.get(label.column, "")
    value = label.normalise(raw)
    if value is None:
        raise InputError(
            f"{source}: subject {subject} has {label.column} {raw!r}, expected {label.positive} or {label.negative}"
        )
    out = {"subject": subject, label.column: value}
    for column in extra:
        if column == "age_bin":
            continue
        if not str(row.get(column, "")).strip():
            raise InputError(f"{source}: subject {subject} has no {column!r} (config key 'split.stratify')")
        out[column] = str(row[column]).strip()
    return {**out, **_age(row, subject, source, age_bins)}


def _age(row: Mapping[str, object], subject: str, source: str | Path, edges: Sequence[Sequence[int]]) -> dict:
    """The validated age (float or None) and age bin of one participants row."""
    names = bin_names(edges)
    age_text = str(row.get("age", "")).strip()
    age = None
    if age_text and age_text.lower() != "nan":
        try:
            age = float(age_text)
        except ValueError:
            raise InputError(f"{source}: subject {subject} has a non-numeric age {age_text!r}") from None
    bin_text = str(row.get("age_bin", "")).strip()
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


def read_participant(path: str | Path, subject: str, label: Label = SEX) -> dict:
    """The validated row of ``subject`` in a participants TSV (or CSV), as `participants.participant` gives it for
    the table `participants.read_participants` reads; InputError naming the file (and the subject)."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: participants table not found")
    with path.open(newline="") as handle:
        reader = csv.DictReader(handle, delimiter="," if path.suffix == ".csv" else "\t")
        if "subject" not in (reader.fieldnames or ()):
            raise InputError(f"{path}: participants table has no 'subject' column")
        rows = [r for r in reader if (r["subject"] or "").strip().removeprefix("sub-") == subject]
    if len(rows) != 1:
        raise InputError(f"{path}: subject {subject} has {len(rows)} rows (expected 1)")
    return validate_row({k: v or "" for k, v in rows[0].items()}, subject, path, label)
