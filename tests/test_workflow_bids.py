"""cohort.source bids end to end at ci scale: export_bids writes the synthetic cohort as BIDS with a patient/control
group; the whole DAG runs on it through the BIDS path (raw layout), the QSIPrep layout runs to the split, and bad
BIDS input stops only the subjects it concerns."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pandas as pd
import pytest
from conftest import snakemake_command

pytestmark = pytest.mark.workflow


def overlay(workdir: Path, export: Path, root: Path, extra: str = "") -> Path:
    """configs/bids-example.yaml's keys pointed at the exported dataset, template and truth (absolute paths)."""
    bids = export / "results" / "bids"
    path = workdir / "bids.yaml"
    path.write_text(
        "cohort: {source: bids}\n"
        f"bids: {{root: {root}{extra}}}\n"
        "label: {column: group, positive: patient, negative: control}\n"
        f"template: {{fa: {bids}/template/template_FA.nii.gz, atlas: {bids}/template/atlas.nii.gz, "
        f"atlas_labels: {bids}/template/atlas_labels.tsv}}\n"
        f"truth: {{planted: {bids}/planted_regions.tsv}}\n"
    )
    return path


def run(project_root: Path, workdir: Path, config: Path, *args: str) -> subprocess.CompletedProcess:
    command = snakemake_command(project_root, workdir, *args, extra_config=config)
    return subprocess.run(command, capture_output=True, text=True, timeout=1800)


@pytest.fixture(scope="module")
def export(project_root, tmp_path_factory) -> Path:
    workdir = tmp_path_factory.mktemp("bids_export")
    result = run(project_root, workdir, project_root / "configs" / "bids-export.yaml", "export_bids")
    assert result.returncode == 0, result.stderr[-4000:]
    return workdir


@pytest.fixture(scope="module")
def bids_run(project_root, export, tmp_path_factory) -> Path:
    workdir = tmp_path_factory.mktemp("bids_run")
    config = overlay(workdir, export, export / "results" / "bids" / "rawdata")
    result = run(project_root, workdir, config)
    assert result.returncode == 0, result.stderr[-4000:]
    return workdir


def test_export_has_a_group_unrelated_to_sex(export):
    table = pd.read_csv(export / "results/bids/rawdata/participants.tsv", sep="\t")
    assert set(table["group"]) == {"patient", "control"}
    counts = table.groupby(["group", "sex"]).size()
    assert (counts.max() - counts.min()) <= 1  # sex balanced within each group


def test_whole_dag_runs_from_bids_and_speaks_of_patients(bids_run):
    tables = bids_run / "results" / "tables"
    for name in ("table1_cohort", "table1b_volume", "table2_performance", "truth_check"):
        text = (tables / f"{name}.md").read_text()
        assert "patient" in text and "control" in text, name
        assert "male" not in text and "female" not in text, name
    assert "Patient vs control classification" in (tables / "table2_performance.md").read_text()
    predictions = pd.read_csv(bids_run / "results/models/cnn2d/FA/predictions.tsv", sep="\t")
    assert set(predictions["group"]) == {"patient", "control"}
    assert (predictions["label"] == (predictions["group"] == "patient")).all()
    truth = pd.read_csv(tables / "truth_check.tsv", sep="\t")
    assert (truth["n_planted"] == 8).all()  # the exported truth, effect 'group', was read
    assert "no motion or eddy-current correction" in (bids_run / "logs/import_bids_subject/sub-syn0001.log").read_text()


def test_qsiprep_layout_runs_with_its_own_masks(project_root, export, tmp_path):
    root = export / "results/bids/rawdata/derivatives/qsiprep"
    config = overlay(tmp_path, export, root, ", desc: preproc, space: T1w")
    result = run(project_root, tmp_path, config, "--config", "stages={until: split}")
    assert result.returncode == 0, result.stderr[-4000:]
    source = (tmp_path / "results/raw/sub-syn0001/source.json").read_text()
    assert "desc-brain_mask" in source and "desc-preproc_dwi" in source
    assert "patient" in (tmp_path / "results/tables/table1_cohort.md").read_text()


def test_bad_bids_input_names_the_subject_and_the_others_finish(project_root, export, tmp_path):
    root = tmp_path / "ds"
    shutil.copytree(export / "results/bids/rawdata", root, ignore=shutil.ignore_patterns("derivatives"))
    (root / "sub-syn0002/dwi/sub-syn0002_dwi.bval").unlink()
    folder = root / "sub-syn0003" / "dwi"
    shutil.copyfile(folder / "sub-syn0003_dwi.nii.gz", folder / "sub-syn0003_run-2_dwi.nii.gz")
    participants = pd.read_csv(root / "participants.tsv", sep="\t")
    participants.loc[participants["participant_id"] == "sub-syn0004", "group"] = "unknown"
    extra = pd.DataFrame([{"participant_id": "sub-ghost", "group": "control", "sex": "F", "age": 30}])
    pd.concat([participants, extra]).to_csv(root / "participants.tsv", sep="\t", index=False)
    config = overlay(tmp_path, export, root)
    result = run(project_root, tmp_path, config, "--keep-going", "--config", "stages={until: registration}")
    assert result.returncode != 0
    logs = tmp_path / "logs" / "import_bids_subject"
    expected = {
        "syn0002": "subject syn0002: sub-syn0002_dwi.nii.gz has no .bval",
        "syn0003": "subject syn0003: 2 DWI series match",
        "ghost": "subject ghost: no DWI matching config section 'bids'",
    }
    for subject, message in expected.items():
        errors = [line for line in (logs / f"sub-{subject}.log").read_text().splitlines() if "ERROR" in line]
        assert len(errors) == 1 and message in errors[0], errors
    assert not (logs / "sub-syn0004.log").exists()  # excluded, not processed
    excluded = pd.read_csv(tmp_path / "results/cohort/excluded.tsv", sep="\t")
    assert excluded["subject"].tolist() == ["syn0004"] and "unknown" in excluded["reason"][0]
    assert (tmp_path / "results/registered/sub-syn0001/FA.nii.gz").exists()  # the others finished
