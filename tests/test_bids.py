"""cohort.source bids: participants and label, per-subject file choice with one-line errors, import, export."""

from __future__ import annotations

import json
import os
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from dmriscope.cohort.bids import (
    bids_cohort,
    build_bids_participants,
    choose_files,
    dwi_candidates,
    import_subject,
    participants_path,
)
from dmriscope.cohort.bids_export import dataset_description, export_bids, relabel
from dmriscope.io import InputError
from dmriscope.label import Label

GROUP = Label("group", "patient", "control", "patient", "control")
BVALS = np.array([0, 0, 1000, 1000, 2000, 2000])


def dwi_image(shape=(24, 24, 24)) -> nib.Nifti1Image:
    """A ball of signal (radius 18 mm) in noise, 6 volumes, 2 mm voxels."""
    rng = np.random.default_rng(0)
    grid = np.indices(shape).astype(float) - (np.array(shape)[:, None, None, None] - 1) / 2
    ball = (grid**2).sum(0) <= 9**2
    data = rng.normal(0, 5, (*shape, BVALS.size)) + ball[..., None] * 1000 * np.exp(-BVALS / 1000 * 0.8)
    return nib.Nifti1Image(np.abs(data).astype(np.float32), np.diag([2.0, 2.0, 2.0, 1.0]))


def write_series(folder: Path, stem: str, *, bval: bool = True, bvec: bool = True) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    nib.save(dwi_image(), folder / f"{stem}.nii.gz")
    if bval:
        (folder / f"{stem}.bval").write_text(" ".join(map(str, BVALS)) + "\n")
    if bvec:
        vectors = np.zeros((3, BVALS.size))
        vectors[0, 2:] = 1
        np.savetxt(folder / f"{stem}.bvec", vectors, fmt="%.1f")


def make_dataset(root: Path, rows: list[tuple[str, str, int]], derivative: bool = False) -> Path:
    root.mkdir(parents=True)
    dataset_description(root, derivative)
    frame = pd.DataFrame(rows, columns=["participant_id", "group", "age"])
    frame.to_csv(root / "participants.tsv", sep="\t", index=False)
    return root


@pytest.fixture
def dataset(tmp_path) -> Path:
    root = make_dataset(
        tmp_path / "ds",
        [("sub-01", "patient", 24), ("sub-02", "control", 28), ("sub-03", "other", 30), ("sub-04", "Control", 33)],
    )
    write_series(root / "sub-01" / "dwi", "sub-01_dwi")
    write_series(root / "sub-02" / "ses-1" / "dwi", "sub-02_ses-1_dwi")
    write_series(root / "sub-04" / "dwi", "sub-04_run-1_dwi")
    write_series(root / "sub-04" / "dwi", "sub-04_run-2_dwi", bval=False)
    return root


def test_cohort_keeps_the_two_groups_and_lists_the_others(dataset):
    kept, excluded = bids_cohort({"root": str(dataset), "exclude": ["sub-02"]}, GROUP)
    assert kept["subject"].tolist() == ["01", "04"]
    assert kept["group"].tolist() == ["patient", "control"]  # 'Control' read case-insensitively
    reasons = dict(zip(excluded["subject"], excluded["reason"]))
    assert reasons == {
        "02": "listed in config key 'bids.exclude'",
        "03": "group 'other' is neither patient nor control",
    }


def test_missing_label_column_names_the_key(dataset):
    with pytest.raises(InputError, match=r"participants.tsv: no column 'diagnosis' \(config key 'label.column'"):
        bids_cohort({"root": str(dataset)}, Label("diagnosis", "AD", "CN"))


def test_not_a_dataset_names_the_key(tmp_path):
    with pytest.raises(InputError, match=r"config key 'bids.root': .* has no dataset_description.json"):
        bids_cohort({"root": str(tmp_path)}, GROUP)


@pytest.mark.parametrize(
    ("subject", "bids", "message"),
    [
        ("03", {}, r"subject 03: no DWI matching config section 'bids' \(files found: none\)"),
        ("04", {}, r"subject 04: 2 DWI series match \(sub-04_run-1_dwi.nii.gz, sub-04_run-2_dwi.nii.gz\)"),
        ("04", {"run": 2}, r"subject 04: sub-04_run-2_dwi.nii.gz has no .bval \(files found: .*run-2_dwi.bvec"),
        ("02", {"session": "2"}, "subject 02: no DWI matching"),
    ],
)
def test_bad_subject_is_one_line_naming_it(dataset, subject, bids, message):
    candidates = dwi_candidates({"root": str(dataset), **bids}, ["01", "02", "03", "04"])
    with pytest.raises(InputError, match=message) as info:
        choose_files(subject, candidates[subject], "median_otsu")
    assert "\n" not in str(info.value)


def test_run_entity_picks_one_series(dataset):
    candidates = dwi_candidates({"root": str(dataset), "run": 1}, ["04"])
    assert Path(choose_files("04", candidates["04"], "median_otsu")["dwi"]).name == "sub-04_run-1_dwi.nii.gz"


def test_import_links_the_dwi_and_masks_with_median_otsu(dataset, tmp_path, caplog):
    candidates = dwi_candidates({"root": str(dataset)}, ["01"])["01"]
    out = {k: str(tmp_path / "raw" / f"{k}.x") for k in ("bval", "bvec", "source")}
    out_dwi, out_mask = tmp_path / "raw" / "dwi.nii.gz", tmp_path / "raw" / "mask.nii.gz"
    (tmp_path / "raw").mkdir()
    chosen = import_subject(
        subject="01", candidates=candidates, mask="median_otsu", out_dwi=str(out_dwi), out_bval=out["bval"],
        out_bvec=out["bvec"], out_mask=str(out_mask), out_source=out["source"],
    )  # fmt: skip
    assert out_dwi.is_symlink() and os.readlink(out_dwi) == os.path.abspath(chosen["dwi"])
    mask = nib.load(out_mask).get_fdata() > 0
    ball = dwi_image().get_fdata()[..., 0] > 500
    assert (mask & ball).sum() / ball.sum() > 0.9 and (mask & ~ball).sum() < 0.2 * ball.sum()
    assert json.loads(Path(out["source"]).read_text())["dwi"] == chosen["dwi"]
    assert "no motion or eddy-current correction" in caplog.text


def qsiprep(tmp_path: Path, with_mask: bool) -> Path:
    raw = make_dataset(tmp_path / "raw", [("sub-01", "patient", 24)])
    root = raw / "derivatives" / "qsiprep"
    root.mkdir(parents=True)
    dataset_description(root, derivative=True)
    folder = root / "sub-01" / "dwi"
    write_series(folder, "sub-01_space-T1w_desc-preproc_dwi")
    if with_mask:
        nib.save(
            nib.Nifti1Image(np.ones((24, 24, 24), np.uint8), np.eye(4)),
            folder / "sub-01_space-T1w_desc-brain_mask.nii.gz",
        )
    return root


def test_qsiprep_layout_takes_its_mask_and_the_raw_participants(tmp_path):
    root = qsiprep(tmp_path, with_mask=True)
    bids = {"root": str(root), "desc": "preproc", "space": "T1w"}
    assert participants_path(bids) == tmp_path / "raw" / "participants.tsv"
    chosen = choose_files("01", dwi_candidates(bids, ["01"])["01"], "dataset")
    assert Path(chosen["mask"]).name == "sub-01_space-T1w_desc-brain_mask.nii.gz"


def test_qsiprep_without_mask_names_the_subject(tmp_path):
    root = qsiprep(tmp_path, with_mask=False)
    bids = {"root": str(root), "desc": "preproc"}
    with pytest.raises(InputError, match="subject 01: no desc-brain mask for sub-01_space-T1w_desc-preproc_dwi"):
        choose_files("01", dwi_candidates(bids, ["01"])["01"], "dataset")


def test_build_participants_writes_label_age_bin_and_excluded(dataset, tmp_path):
    out, excluded = tmp_path / "participants.tsv", tmp_path / "excluded.tsv"
    label = {"column": "group", "positive": "patient", "negative": "control"}
    n = build_bids_participants(bids={"root": str(dataset)}, participants_out=str(out), excluded_out=str(excluded),
                                label=label, age_bins=[[20, 29], [30, 39]])  # fmt: skip
    table = pd.read_csv(out, sep="\t", dtype=str)
    assert n == 3 and table.columns.tolist() == ["subject", "group", "age", "age_bin"]
    assert table["age_bin"].tolist() == ["20-29", "20-29", "30-39"]
    assert pd.read_csv(excluded, sep="\t", dtype=str)["subject"].tolist() == ["03"]


def test_relabel_balances_sex_within_groups_independently_of_the_effect():
    people = pd.DataFrame({"subject": [f"s{i:02d}" for i in range(40)], "sex": ["M"] * 20 + ["F"] * 20, "age": 25})
    table = relabel(people, seed=3)
    assert (table["group"] == np.where(people["sex"] == "M", "patient", "control")).all()
    counts = table.groupby(["group", "sex"]).size()
    assert counts.tolist() == [10, 10, 10, 10]
    assert (table["sex"] != people["sex"]).sum() == 20  # half of each group changed sex label: unrelated


def test_export_is_valid_bids_and_reads_back(tmp_path):
    from bids_validator import BIDSValidator

    raw = tmp_path / "sim"
    subjects = ["syn0001", "syn0002"]
    for s in subjects:
        write_series(raw / s, "dwi")
        nib.save(nib.Nifti1Image(np.ones((24, 24, 24), np.uint8), np.eye(4)), raw / s / "mask.nii.gz")
    pd.DataFrame({"subject": subjects, "sex": ["M", "F"], "age": [24, 31], "age_bin": ["22-25", "31-37"]}).to_csv(
        tmp_path / "participants.tsv", sep="\t", index=False
    )
    pd.DataFrame({"region": [3, 4], "effect": ["sex", "age"], "size": [1.2, 0.5]}).to_csv(
        tmp_path / "planted.tsv", sep="\t", index=False
    )
    (tmp_path / "fa.nii.gz").write_bytes(b"x")
    export_bids(
        participants=str(tmp_path / "participants.tsv"), subjects=subjects,
        dwi=[str(raw / s / "dwi.nii.gz") for s in subjects], bval=[str(raw / s / "dwi.bval") for s in subjects],
        bvec=[str(raw / s / "dwi.bvec") for s in subjects], masks=[str(raw / s / "mask.nii.gz") for s in subjects],
        planted=str(tmp_path / "planted.tsv"), template={"template_FA.nii.gz": str(tmp_path / "fa.nii.gz")},
        out_dataset=str(tmp_path / "bids"), out_planted=str(tmp_path / "out_planted.tsv"),
        out_template=str(tmp_path / "template"), seed=0,
    )  # fmt: skip
    root = tmp_path / "bids"
    validator = BIDSValidator()
    files = ["/" + str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() and "derivatives" not in p.parts]
    assert len(files) == 12 and all(validator.is_bids(f) for f in files), [f for f in files if not validator.is_bids(f)]
    assert not validator.is_bids("/sub-syn0001/dwi/sub-syn0001_dwi_extra.nii.gz")  # the check can fail
    kept, _ = bids_cohort({"root": str(root)}, GROUP)
    assert kept["group"].tolist() == ["patient", "control"]
    derivatives = {"root": str(root / "derivatives" / "qsiprep"), "desc": "preproc", "space": "T1w"}
    chosen = choose_files("syn0002", dwi_candidates(derivatives, subjects)["syn0002"], "dataset")
    assert chosen["mask"].endswith("sub-syn0002_space-T1w_desc-brain_mask.nii.gz")
    assert pd.read_csv(tmp_path / "out_planted.tsv", sep="\t")["effect"].tolist() == ["group", "age"]


def test_label_from_config():
    label = Label.from_config({"column": "group", "positive": "AD", "negative": "CN", "names": {"positive": "patient"}})
    assert label.names == ("patient", "CN")  # a name not given is the value itself, never "female"
    assert Label.from_config({"column": "sex", "positive": "M", "negative": "F", "names": {}}).names == (
        "male",
        "female",
    )
    assert Label.from_config(None) == Label() and Label().title == "sex"
    assert GROUP.title == "patient vs control" and GROUP.both == "both groups (patient and control)"
    np.testing.assert_array_equal(GROUP.encode(pd.Series(["patient", "control", "patient"])), [1, 0, 1])
    assert GROUP.normalise(" Patient ") == "patient" and GROUP.normalise("x") is None
