"""Participants rows are validated one subject at a time, with messages naming the subject."""

from __future__ import annotations

import pandas as pd
import pytest

from dmriscope.cohort.participants import (
    age_bin_of,
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


def test_good_row_round_trip(tmp_path):
    path = tmp_path / "p.tsv"
    write_participants(pd.DataFrame([{"subject": "a1", "sex": "m", "age": None, "age_bin": "26-30"}]), path)
    row = participant(read_participants(path), "a1", path)
    assert row == {"subject": "a1", "sex": "M", "age": None, "age_bin": "26-30"}
