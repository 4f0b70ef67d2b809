"""HCP demographics: the user's unrestricted CSV (+ an optional subject list) -> the participants table.

HCP's unrestricted CSV has one row per subject with ``Subject``, ``Gender`` (M/F), ``Age`` as a bin (22-25, 26-30,
31-35, 36+) and completion columns such as ``3T_dMRI_Compl`` (true/false) and ``3T_dMRI_PctCompl`` (0-100). The
paper's Table 1 merges the last two age bins as 31-37; exact ages are only in the restricted CSV (``Age_in_Yrs``),
which is used when that column is present. Subjects without diffusion data are reported and skipped; a row with an
unknown gender or age is an error naming the subject. The same selection runs when the DAG is built
(`hcp_subject_ids`) and in the rule (`build_hcp_participants`), so the two cannot disagree.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from dmriscope.cohort.participants import COLUMNS, read_participants, validated, write_participants
from dmriscope.io import InputError, atomic_path

log = logging.getLogger(__name__)

#: HCP's age bins -> the paper's (Table 1 merges 31-35 and 36+ into 31-37)
HCP_AGE_BINS: dict[str, str] = {"22-25": "22-25", "26-30": "26-30", "31-35": "31-37", "36+": "31-37"}
REQUIRED_COLUMNS = ("Subject", "Gender", "Age")
EXACT_AGE_COLUMN = "Age_in_Yrs"
TRUE_WORDS = frozenset({"true", "t", "yes", "y"})
FALSE_WORDS = frozenset({"false", "f", "no", "n", ""})


def _subject_id(text: Any) -> str:
    """A subject ID as a string without the ``sub-`` prefix or a float's ``.0`` (``100307.0`` -> ``100307``)."""
    sid = str(text).strip().removeprefix("sub-")
    return sid[:-2] if sid.endswith(".0") and sid[:-2].isdigit() else sid


def read_hcp_csv(path: str | Path, dmri_column: str | None) -> pd.DataFrame:
    """The CSV as strings, indexed by subject; `InputError` naming the file for a missing column or duplicates."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: HCP demographics CSV not found (config key 'hcp.demographics')")
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot parse the CSV ({exc})") from None
    needed = [*REQUIRED_COLUMNS, *([dmri_column] if dmri_column else [])]
    absent = [c for c in needed if c not in frame.columns]
    if absent:
        hint = " (config key 'hcp.dmri_column')" if dmri_column in absent else ""
        raise InputError(f"{path}: missing column(s) {', '.join(absent)}{hint}")
    frame["Subject"] = frame["Subject"].map(_subject_id)
    duplicated = frame["Subject"][frame["Subject"].duplicated()].tolist()
    if duplicated:
        raise InputError(f"{path}: subject {duplicated[0]} appears more than once")
    return frame.set_index("Subject", drop=False)


def read_subject_list(path: str | Path) -> list[str]:
    """Subject IDs, one per line (``#`` comments and blank lines ignored; ``sub-`` prefixes dropped)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: subject list not found (config key 'hcp.subjects')")
    ids: list[str] = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        text = line.split("#", 1)[0].strip()
        if not text:
            continue
        sid = _subject_id(text.split(",")[0].split()[0])
        if not sid.isalnum():
            raise InputError(f"{path}: line {number}: subject ID {sid!r} is not alphanumeric")
        ids.append(sid)
    if not ids:
        raise InputError(f"{path}: the subject list is empty")
    if len(set(ids)) != len(ids):
        dup = next(s for s in ids if ids.count(s) > 1)
        raise InputError(f"{path}: subject {dup} is listed more than once")
    return ids


def has_dmri(value: str) -> bool:
    """Whether a completion cell says diffusion data exist: true/yes, or a number (count or percent) above 0."""
    text = str(value).strip().lower()
    if text in TRUE_WORDS:
        return True
    if text in FALSE_WORDS or text == "nan":
        return False
    try:
        return float(text) > 0
    except ValueError:
        return False


def select_subjects(
    frame: pd.DataFrame, subjects: Sequence[str] | None, dmri_column: str | None, source: str | Path
) -> tuple[list[str], list[str]]:
    """(kept, skipped): the requested subjects (all of the CSV when `subjects` is None) with and without dMRI.

    A requested subject absent from the CSV is an `InputError` naming it.
    """
    wanted = list(frame.index) if subjects is None else list(subjects)
    unknown = [s for s in wanted if s not in frame.index]
    if unknown:
        more = f" (and {len(unknown) - 1} more)" if len(unknown) > 1 else ""
        raise InputError(f"{source}: subject {unknown[0]}{more} from the subject list is not in the CSV")
    if not dmri_column:
        return wanted, []
    available = frame[dmri_column].map(has_dmri)
    kept = [s for s in wanted if available[s]]
    skipped = [s for s in wanted if not available[s]]
    return kept, skipped


def _bad_row(row: pd.Series) -> str | None:
    """Why a CSV row cannot be used, or None (gender M/F, one of HCP's age bins, a numeric exact age if given)."""
    if row["Gender"].strip().upper() not in ("M", "F"):
        return f"Gender {row['Gender']!r}"
    if row["Age"].strip() not in HCP_AGE_BINS:
        return f"Age {row['Age']!r}"
    exact = str(row.get(EXACT_AGE_COLUMN, "")).strip()
    if exact and pd.isna(pd.to_numeric(exact, errors="coerce")):
        return f"{EXACT_AGE_COLUMN} {exact!r}"
    return None


def hcp_participants(frame: pd.DataFrame, subjects: Sequence[str], source: str | Path) -> pd.DataFrame:
    """The participants table (subject, sex, age in years or NaN, age_bin) of `subjects`.

    Every bad row is named in one `InputError` line (rows are checked here, so no per-row validation is needed).
    """
    rows = frame.loc[list(subjects)]
    problems = [f"{sid} ({why})" for sid, why in ((s, _bad_row(r)) for s, r in rows.iterrows()) if why]
    if problems:
        more = f" and {len(problems) - 5} more" if len(problems) > 5 else ""
        raise InputError(f"{source}: {len(problems)} subject(s) with bad rows: {', '.join(problems[:5])}{more}")
    exact = rows[EXACT_AGE_COLUMN] if EXACT_AGE_COLUMN in rows.columns else pd.Series("", index=rows.index)
    return pd.DataFrame(
        {
            "subject": rows["Subject"].to_numpy(),
            "sex": rows["Gender"].str.strip().str.upper().to_numpy(),
            "age": pd.to_numeric(exact.str.strip(), errors="coerce").to_numpy(),
            "age_bin": rows["Age"].str.strip().map(HCP_AGE_BINS).to_numpy(),
        },
        columns=COLUMNS,
    )


def hcp_cohort(hcp: Mapping[str, Any], participants: str | None = None) -> tuple[pd.DataFrame, list[str]]:
    """(participants, skipped) for the real-data path.

    From the config's ``hcp`` section (demographics CSV, optional subject list, dMRI column) when
    ``hcp.demographics`` is set; otherwise from a ready participants table (``cohort.participants``), validated.
    """
    if not hcp.get("demographics"):
        if not participants:
            raise InputError(
                "config key 'hcp.demographics': the HCP unrestricted CSV is required for cohort.source hcp"
            )
        return validated(read_participants(participants), participants), []
    source = Path(hcp["demographics"])
    frame = read_hcp_csv(source, hcp.get("dmri_column"))
    subjects = read_subject_list(hcp["subjects"]) if hcp.get("subjects") else None
    kept, skipped = select_subjects(frame, subjects, hcp.get("dmri_column"), source)
    if not kept:
        raise InputError(f"{source}: no requested subject has diffusion data (column {hcp.get('dmri_column')})")
    return hcp_participants(frame, kept, source), skipped


def hcp_subject_ids(hcp: Mapping[str, Any], participants: str | None = None) -> list[str]:
    """The subjects the workflow will process (known when the DAG is built): requested, with dMRI, valid rows."""
    table, _ = hcp_cohort(hcp, participants)
    return table["subject"].tolist()


def hcp_source_files(hcp: Mapping[str, Any], participants: str | None = None) -> list[str]:
    """The input files the participants table is built from: the CSV and subject list, or the ready table."""
    if not hcp.get("demographics"):
        return [participants] if participants else []
    return [str(hcp[key]) for key in ("demographics", "subjects") if hcp.get(key)]


def build_hcp_participants(
    hcp: Mapping[str, Any], participants_out: str | Path, excluded_out: str | Path, table: str | None = None
) -> int:
    """Write participants.tsv and a TSV of skipped subjects (subject, reason); returns the number of participants.

    `table` is ``cohort.participants``, used only when ``hcp.demographics`` is not set.
    """
    participants, skipped = hcp_cohort(hcp, table)
    if skipped:
        shown = ", ".join(skipped[:10]) + (" ..." if len(skipped) > 10 else "")
        log.warning("%d subject(s) skipped, no diffusion data (%s): %s", len(skipped), hcp.get("dmri_column"), shown)
    reason = f"no diffusion data ({hcp.get('dmri_column')})"
    with atomic_path(excluded_out) as tmp:
        pd.DataFrame({"subject": skipped, "reason": [reason] * len(skipped)}).to_csv(tmp, sep="\t", index=False)
    write_participants(participants, participants_out)
    counts = participants.groupby(["sex", "age_bin"]).size().to_dict()
    log.info("%d participants; sex x age bin: %s", len(participants), counts)
    return len(participants)
