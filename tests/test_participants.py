"""Participants rows are validated one subject at a time, with messages naming the subject; the pandas-free reader
of one row (per-subject jobs) accepts and rejects exactly what the table path does."""

from __future__ import annotations

import pandas as pd
import pytest

from dmriscope.cohort.participant_row import age_bin_of, read_participant
from dmriscope.cohort.participants import (
    draw_demographics,
    participant,
    read_participants,
    write_participants,
)
from dmriscope.io import InputError


def test_age_bins():
    assert [age_bin_of(a) for a in (22, 25.9, 26, 30, 31, 37)] == ["22-25", "22-25", "26-30", "26-30", "31-37", "31-37"]
    with pytest.raises(ValueError):
        age_bin_of(38)


def test_draw_follows_fractions():
    people = draw_demographics([str(i) for i in range(4000)], 1, 0.4568, {"M": [1, 0, 0], "F": [0, 0, 1]})
    assert abs((people["sex"] == "M").mean() - 0.4568) < 0.03
    assert set(people.loc[people["sex"] == "M", "age_bin"]) == {"22-25"}
    assert people.loc[people["sex"] == "F", "age"].between(31, 37).all()


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ({"sex": "X", "age": "24", "age_bin": ""}, "subject 100307 has sex 'X'"),
        ({"sex": "M", "age": "", "age_bin": ""}, "subject 100307 has no age"),
        ({"sex": "F", "age": "abc", "age_bin": ""}, "non-numeric age"),
        ({"sex": "F", "age": "", "age_bin": "40-45"}, "age bin '40-45'"),
    ],
)
def test_bad_rows_name_the_subject(tmp_path, row, message):
    path = tmp_path / "participants.tsv"
    pd.DataFrame([{"subject": "sub-100307", **row}]).to_csv(path, sep="\t", index=False)
    frame = read_participants(path)
    with pytest.raises(InputError, match=message) as info:
        participant(frame, "100307", path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(InputError) as direct:
        read_participant(path, "100307")
    assert str(direct.value) == str(info.value)


def test_good_row_round_trip(tmp_path):
    path = tmp_path / "p.tsv"
    write_participants(pd.DataFrame([{"subject": "a1", "sex": "m", "age": None, "age_bin": "26-30"}]), path)
    row = participant(read_participants(path), "a1", path)
    assert row == {"subject": "a1", "sex": "M", "age": None, "age_bin": "26-30"}


@pytest.mark.parametrize("suffix", [".tsv", ".csv"])
def test_one_row_reader_matches_the_table_path(tmp_path, suffix):
    path = tmp_path / f"p{suffix}"
    rows = [
        {"subject": "sub-a1", "sex": " f ", "age": "27.5", "age_bin": ""},
        {"subject": "a2", "sex": "M", "age": "", "age_bin": "31-37"},
        {"subject": "a3", "sex": "M", "age": "22", "age_bin": "22-25"},
    ]
    pd.DataFrame(rows).to_csv(path, sep="," if suffix == ".csv" else "\t", index=False)
    for subject in ("a1", "a2", "a3"):
        assert read_participant(path, subject) == participant(read_participants(path), subject, path)
    assert read_participant(path, "a1") == {"subject": "a1", "sex": "F", "age": 27.5, "age_bin": "26-30"}


def test_one_row_reader_errors_name_the_file(tmp_path):
    path = tmp_path / "p.tsv"
    with pytest.raises(InputError, match="participants table not found"):
        read_participant(path, "a1")
    pd.DataFrame([{"id": "a1", "sex": "M"}]).to_csv(path, sep="\t", index=False)
    with pytest.raises(InputError, match="no 'subject' column"):
        read_participant(path, "a1")
    pd.DataFrame([{"subject": "a1", "sex": "M"}, {"subject": "sub-a1", "sex": "F"}]).to_csv(path, sep="\t", index=False)
    for subject, count in (("a1", 2), ("b9", 0)):
        with pytest.raises(InputError, match=f"subject {subject} has {count} rows") as info:
            read_participant(path, subject)
        assert str(path) in str(info.value)
    pd.DataFrame([{"subject": "a1", "sex": "M"}]).to_csv(path, sep="\t", index=False)  # no age columns at all
    with pytest.raises(InputError, match="subject a1 has no age and no age bin"):
        read_participant(path, "a1")
