"""The real Snakefile on configs/ci.yaml, through registration and the split; bad input with --keep-going."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import yaml

pytestmark = pytest.mark.workflow
METRICS = ("FA", "MD", "MK")


def snakemake(root: Path, workdir: Path, *args: str, extra_config: Path | None = None) -> subprocess.CompletedProcess:
    """Run the real Snakefile on configs/ci.yaml (+ `extra_config` merged over it) in `workdir`."""
    configs = [str(root / "configs" / "ci.yaml")] + ([str(extra_config)] if extra_config else [])
    command = [sys.executable, "-m", "snakemake", "--snakefile", str(root / "Snakefile"), "--directory", str(workdir)]
    command += ["--cores", "2", *args, "--configfile", *configs]
    return subprocess.run(command, cwd=root, capture_output=True, text=True, timeout=1200)


@pytest.fixture(scope="module")
def foundation(project_root, tmp_path_factory) -> Path:
    workdir = tmp_path_factory.mktemp("foundation")
    result = snakemake(project_root, workdir, "--config", "stages={until: split}")
    assert result.returncode == 0, result.stderr[-3000:]
    return workdir


def ci_config(root: Path) -> dict:
    return yaml.safe_load((root / "configs" / "ci.yaml").read_text())


def test_every_subject_registered(project_root, foundation):
    split = pd.read_csv(foundation / "results/split/split.tsv", sep="\t", dtype={"subject": str})
    assert len(split) == ci_config(project_root)["cohort"]["n_subjects"]
    template = nib.load(foundation / "results/template/template_FA.nii.gz")
    for subject in split["subject"]:
        for metric in METRICS:
            img = nib.load(foundation / f"results/registered/sub-{subject}/{metric}.nii.gz")
            assert img.shape == template.shape
            assert np.allclose(img.affine, template.affine)
            assert np.isfinite(img.get_fdata()).all()
        qc = pd.read_csv(foundation / f"results/registered/sub-{subject}/qc.tsv", sep="\t")
        assert (foundation / f"results/qc/registration/sub-{subject}.png").stat().st_size > 1000
        assert len(qc) >= 1
        # raw DWI is temp(): removed once fitted
        assert not (foundation / f"results/raw/sub-{subject}/dwi.nii.gz").exists()
        assert (foundation / f"logs/fit_dki/sub-{subject}.log").exists()


def test_split_and_table1(project_root, foundation):
    split = pd.read_csv(foundation / "results/split/split.tsv", sep="\t", dtype={"subject": str})
    counts = ci_config(project_root)["split"]
    expected = {"train": counts["n_train"], "val": counts["n_val"], "test": counts["n_test"]}
    assert split["set"].value_counts().to_dict() == expected
    table = (foundation / "results/tables/table1_cohort.md").read_text()
    assert "Table 1" in table and "Total" in table
    assert (foundation / "results/split/split.sha256").read_text().split()[0]


def test_bad_participant_row_fails_only_that_subject(project_root, tmp_path):
    participants = tmp_path / "participants.tsv"
    rows = [
        {"subject": "good1", "sex": "M", "age": 24, "age_bin": ""},
        {"subject": "bad1", "sex": "X", "age": 30, "age_bin": ""},
        {"subject": "good2", "sex": "F", "age": 33, "age_bin": ""},
        {"subject": "good3", "sex": "F", "age": "", "age_bin": "26-30"},
    ]
    pd.DataFrame(rows).to_csv(participants, sep="\t", index=False)
    overrides = tmp_path / "overrides.yaml"
    overrides.write_text(f"cohort:\n  participants: {participants}\nsplit:\n  n_train: 2\n  n_val: 1\n  n_test: 1\n")
    targets = [f"results/registered/sub-{s}/FA.nii.gz" for s in ("good1", "bad1", "good2", "good3")]
    result = snakemake(project_root, tmp_path, "--keep-going", *targets, extra_config=overrides)
    assert result.returncode != 0
    assert "subject bad1 has sex 'X'" in result.stderr
    for subject in ("good1", "good2", "good3"):
        assert (tmp_path / f"results/registered/sub-{subject}/FA.nii.gz").exists()
    assert not (tmp_path / "results/registered/sub-bad1").exists()
