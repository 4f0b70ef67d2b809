"""HCP demographics CSV -> participants: bins, skipped subjects without dMRI, bad rows named, parse-time agreement."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest

from dmriscope.cohort.demographics import (
    build_hcp_participants,
    has_dmri,
    hcp_cohort,
    read_subject_list,
)
from dmriscope.cohort.subjects import subject_ids
from dmriscope.config import ConfigError, validate_schema
from dmriscope.io import InputError

FIXTURES = Path(__file__).parent / "fixtures"
CSV = FIXTURES / "hcp_unrestricted.csv"
SUBJECTS = FIXTURES / "hcp_subjects.txt"
BAD_ROWS = {"102109", "102311"}  # Gender U; empty Age
NO_DMRI = {"101006", "102008"}


def hcp(**overrides) -> dict:
    return validate_schema({"cohort": {"source": "hcp"}, "hcp": {"demographics": str(CSV), **overrides}})["hcp"]


def one_line_error(exc_info: pytest.ExceptionInfo) -> str:
    text = str(exc_info.value)
    assert "\n" not in text
    return text


def test_subject_list_gives_bins_and_skips_subjects_without_dmri(tmp_path):
    participants_tsv, excluded_tsv = tmp_path / "participants.tsv", tmp_path / "excluded.tsv"
    n = build_hcp_participants(hcp(subjects=str(SUBJECTS)), participants_tsv, excluded_tsv)
    table = pd.read_csv(participants_tsv, sep="\t", dtype=str, keep_default_na=False)
    assert n == 5 and table["subject"].tolist() == ["100206", "100307", "100408", "101107", "101915"]
    by_subject = table.set_index("subject")
    assert by_subject.loc["100307", "sex"] == "F" and by_subject.loc["100206", "sex"] == "M"
    # HCP's 31-35 and 36+ merge into the paper's 31-37; exact ages are unknown from the unrestricted CSV
    assert by_subject["age_bin"].to_dict() == {
        "100206": "26-30",
        "100307": "26-30",
        "100408": "31-37",
        "101107": "22-25",
        "101915": "31-37",
    }
    assert (by_subject["age"] == "").all()
    excluded = pd.read_csv(excluded_tsv, sep="\t", dtype=str)
    assert excluded["subject"].tolist() == ["101006"]
    assert "3T_dMRI_Compl" in excluded["reason"].iloc[0]


def test_whole_csv_reports_every_bad_row_naming_the_subjects():
    with pytest.raises(InputError) as info:
        hcp_cohort(hcp())
    text = one_line_error(info)
    assert str(CSV) in text and "2 subject(s)" in text
    assert "102109 (Gender 'U')" in text and "102311 (Age '')" in text


def test_whole_csv_without_the_bad_rows(tmp_path):
    frame = pd.read_csv(CSV, dtype=str)
    frame = frame[~frame["Subject"].isin(BAD_ROWS)]
    csv = tmp_path / "clean.csv"
    frame.to_csv(csv, index=False)
    participants, skipped = hcp_cohort(hcp(demographics=str(csv)))
    expected = set(frame["Subject"]) - NO_DMRI
    assert set(participants["subject"]) == expected and set(skipped) == NO_DMRI


def test_percent_column_and_no_filter(tmp_path):
    listed = tmp_path / "list.txt"
    listed.write_text("101006\n101410\n100206\n")
    participants, skipped = hcp_cohort(hcp(subjects=str(listed), dmri_column="3T_dMRI_PctCompl"))
    assert participants["subject"].tolist() == ["101410", "100206"] and skipped == ["101006"]
    participants, skipped = hcp_cohort(hcp(subjects=str(listed), dmri_column=None))
    assert participants["subject"].tolist() == ["101006", "101410", "100206"] and skipped == []


@pytest.mark.parametrize(
    ("value", "expected"),
    [("true", True), ("TRUE", True), ("100", True), ("12.5", True), ("false", False), ("0", False), ("", False)],
)
def test_has_dmri(value, expected):
    assert has_dmri(value) is expected


def test_exact_ages_used_when_present(tmp_path):
    frame = pd.read_csv(CSV, dtype=str).iloc[:2]
    frame["Age_in_Yrs"] = ["28", "27"]
    csv = tmp_path / "with_ages.csv"
    frame.to_csv(csv, index=False)
    participants, _ = hcp_cohort(hcp(demographics=str(csv)))
    assert participants["age"].tolist() == [28.0, 27.0]
    frame["Age_in_Yrs"] = ["28", "about 27"]
    frame.to_csv(csv, index=False)
    with pytest.raises(InputError, match="100307 \\(Age_in_Yrs 'about 27'\\)"):
        hcp_cohort(hcp(demographics=str(csv)))


def test_subject_missing_from_csv(tmp_path):
    listed = tmp_path / "list.txt"
    listed.write_text("100206\n999999\n")
    with pytest.raises(InputError, match="subject 999999 from the subject list is not in the CSV") as info:
        hcp_cohort(hcp(subjects=str(listed)))
    one_line_error(info)


def test_missing_dmri_column_names_the_config_key():
    with pytest.raises(InputError, match=r"missing column\(s\) 3T_dMRI_Done \(config key 'hcp.dmri_column'\)"):
        hcp_cohort(hcp(dmri_column="3T_dMRI_Done"))


@pytest.mark.parametrize(
    ("text", "message"),
    [("100206\n100206\n", "100206 is listed more than once"), ("# nothing\n", "empty"), ("1002-06\n", "line 1")],
)
def test_bad_subject_lists(tmp_path, text, message):
    path = tmp_path / "list.txt"
    path.write_text(text)
    with pytest.raises(InputError, match=message):
        read_subject_list(path)


def test_parse_time_subjects_match_the_rule(tmp_path):
    """The DAG's subject list (cohort.subjects.subject_ids) and the rule's participants table cannot disagree."""
    csv = tmp_path / "hcp.csv"
    shutil.copy(CSV, csv)
    config = validate_schema(
        {"cohort": {"source": "hcp"}, "hcp": {"demographics": str(csv), "subjects": str(SUBJECTS)}}
    )
    build_hcp_participants(config["hcp"], tmp_path / "p.tsv", tmp_path / "x.tsv")
    written = pd.read_csv(tmp_path / "p.tsv", sep="\t", dtype=str)["subject"].tolist()
    assert subject_ids(config) == written
    config["hcp"]["subjects"] = None  # every subject: the bad rows now stop the DAG build, naming the key
    with pytest.raises(ConfigError, match=r"config key 'hcp': .*102109"):
        subject_ids(config)
    config["hcp"]["demographics"] = None
    with pytest.raises(ConfigError, match="config key 'hcp.demographics'"):
        subject_ids(config)


def test_ready_participants_table_instead_of_csv(tmp_path):
    table = tmp_path / "participants.tsv"
    table.write_text("subject\tsex\tage\tage_bin\nsub-100206\tM\t27\t\n100307\tF\t\t31-37\n")
    participants, skipped = hcp_cohort(hcp(demographics=None), str(table))
    assert participants["subject"].tolist() == ["100206", "100307"] and skipped == []
    assert participants["age_bin"].tolist() == ["26-30", "31-37"]
