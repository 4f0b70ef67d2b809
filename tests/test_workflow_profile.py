"""The per-job timing line of `run_script` and benchmarks/workflow_profile.py's per-rule table built from it."""

from __future__ import annotations

import math
import time

import pytest
from conftest import load_benchmark

from dmriscope.io import InputError, process_age, run_script


@pytest.fixture(scope="module")
def profile():
    return load_benchmark("workflow_profile")


def fake_job(run_dir, rule, name, seconds, wall):
    """One job as Snakemake leaves it: its log (written by run_script) and its benchmark TSV."""
    log = run_dir / "logs" / rule / f"{name}.log"
    run_script(lambda pause: time.sleep(pause), log, pause=seconds)
    bench = run_dir / "benchmarks-out" / rule / f"{name}.tsv"
    bench.parent.mkdir(parents=True, exist_ok=True)
    bench.write_text(f"s\th:m:s\tmax_rss\n{wall}\t0:00:{wall:.0f}\t100\n")


def test_process_age_is_this_process():
    age = process_age()
    assert age is not None and 0 < age < time.time()  # started before now, after the epoch
    time.sleep(0.2)
    assert process_age() - age == pytest.approx(0.2, abs=0.05)


def test_table_splits_wall_into_computation_and_overhead(profile, tmp_path):
    fake_job(tmp_path, "fit_dki", "sub-1", 0.10, 3.0)
    fake_job(tmp_path, "fit_dki", "sub-2", 0.30, 5.0)
    bench = tmp_path / "benchmarks-out" / "stack_tensors" / "FA.tsv"  # a job without a timing line
    bench.parent.mkdir(parents=True)
    bench.write_text("s\th:m:s\n1.5\t0:00:01\n")
    rows = {r["rule"]: r for r in profile.profile_rows(tmp_path)}
    dki = rows["fit_dki"]
    assert dki["jobs"] == 2 and dki["mean wall s"] == pytest.approx(4.0)
    assert dki["mean computation s"] == pytest.approx(0.2, abs=0.03)
    startup = process_age()  # these fake jobs ran in this process, so their start-up is this process's age
    assert 0 < dki["mean start-up s"] < startup
    assert dki["rest s"] == pytest.approx(4.0 - dki["mean computation s"] - dki["mean start-up s"])
    assert dki["share"] == pytest.approx(8.0 / 9.5)
    assert math.isnan(rows["stack_tensors"]["mean computation s"])
    assert [r["rule"] for r in profile.profile_rows(tmp_path)] == ["fit_dki", "stack_tensors"]


def test_failed_job_writes_no_timing_line(tmp_path):
    log = tmp_path / "bad.log"

    def fails():
        raise InputError("sub-1/dwi.nii.gz: file not found")

    with pytest.raises(SystemExit):
        run_script(fails, log)
    assert "timing:" not in log.read_text()
