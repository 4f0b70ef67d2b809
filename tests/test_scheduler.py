"""Snakemake, run with dmriscope's own local profile, never runs more jobs at once than `--cores` allows.

Snakemake 9.10-9.16 did (upstream #3815/#3913): when one ready job was selected alone its cores were not deducted,
but they were returned when it ended, so after a single preparatory job `--cores 2` ran three one-thread jobs at
once (five train_model jobs at times in configs/kfold.yaml) — at paper scale that is gigabytes of memory nobody
planned for. This pins the behaviour of the Snakemake that pyproject.toml installs.
"""

from __future__ import annotations

import subprocess
import sys

SNAKEFILE = """
rule all:
    input: expand("out{n}", n=range(6))

rule prepare:
    output: "common"
    shell: "touch {output}"

rule work:
    input: "common"
    output: "out{n}"
    threads: 1
    shell: "python3 -c 'import time; print(time.time())' > {output}.start; sleep 1.5; "
           "python3 -c 'import time; print(time.time())' > {output}.end; touch {output}"
"""


def most_at_once(workdir, n_jobs):
    """The largest number of `work` jobs whose [start, end] intervals overlap."""
    spans = [
        (float((workdir / f"out{n}.start").read_text()), float((workdir / f"out{n}.end").read_text()))
        for n in range(n_jobs)
    ]
    return max(sum(start <= t < end for start, end in spans) for t, _ in spans)


def test_cores_bound_the_number_of_running_jobs(project_root, tmp_path):
    (tmp_path / "Snakefile").write_text(SNAKEFILE)
    command = [
        sys.executable,
        "-m",
        "snakemake",
        "--workflow-profile",
        str(project_root / "profiles" / "default"),
        "--cores",
        "2",
        "--directory",
        str(tmp_path),
        "--snakefile",
        str(tmp_path / "Snakefile"),
        "--quiet",
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert most_at_once(tmp_path, 6) == 2
