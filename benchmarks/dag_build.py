"""How long Snakemake takes to build the paper-scale DAG (configs/hcp.yaml, 1031 subjects) in a dry run.

A generated HCP-style CSV (1031 subjects with diffusion data + some without) and subject list stand in for the
user's files in a temporary working directory; nothing is downloaded. Target: <= 10 s. Prints a table; exits 1
when a run is over the target. A SLURM client (scontrol) without a reachable controller adds ~9 s to every Snakemake
start: the SLURM executor plugin asks `scontrol show config` when Snakemake loads it.

    .venv/bin/python benchmarks/dag_build.py [--subjects 1031] [--repeats 1]
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
TARGET_S = 10.0  # issue 14


def write_fixture(folder: Path, n_subjects: int, n_without_dmri: int = 34, seed: int = 0) -> Path:
    """An HCP-style CSV, a subject list of the subjects with dMRI, and a config pointing at them; returns it."""
    rng = np.random.default_rng(seed)
    total = n_subjects + n_without_dmri
    ids = 100000 + np.sort(rng.choice(900000, size=total, replace=False))
    has_dmri = np.zeros(total, dtype=bool)
    has_dmri[rng.choice(total, size=n_subjects, replace=False)] = True
    frame = pd.DataFrame(
        {
            "Subject": ids,
            "Release": "S1200",
            "Gender": rng.choice(["M", "F"], size=total, p=[0.4568, 0.5432]),
            "Age": rng.choice(["22-25", "26-30", "31-35", "36+"], size=total, p=[0.25, 0.42, 0.31, 0.02]),
            "3T_dMRI_Compl": np.where(has_dmri, "true", "false"),
        }
    )
    frame.to_csv(folder / "unrestricted.csv", index=False)
    (folder / "subjects.txt").write_text("\n".join(str(s) for s in ids[has_dmri]) + "\n")
    override = folder / "paths.yaml"
    override.write_text(f"hcp:\n  demographics: {folder / 'unrestricted.csv'}\n  subjects: {folder / 'subjects.txt'}\n")
    return override


def child_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def dry_run(workdir: Path, override: Path) -> tuple[float, float, int]:
    """(wall seconds, CPU seconds, jobs) of `snakemake -n --configfile configs/hcp.yaml <override>`."""
    command = [sys.executable, "-m", "snakemake", "-n", "--quiet", "rules", "-s", str(ROOT / "Snakefile")]
    command += ["-d", str(workdir), "--configfile", str(ROOT / "configs" / "hcp.yaml"), str(override)]
    started, cpu_started = time.perf_counter(), child_cpu_seconds()
    run = subprocess.run(command, cwd=workdir, capture_output=True, text=True, check=False)
    seconds, cpu = time.perf_counter() - started, child_cpu_seconds() - cpu_started
    output = run.stdout + run.stderr
    if run.returncode != 0:
        raise SystemExit(f"dry run failed (exit {run.returncode}):\n{output[-3000:]}")
    match = re.search(r"^total\s+(\d+)", output, flags=re.MULTILINE)
    return seconds, cpu, int(match.group(1)) if match else -1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subjects", type=int, default=1031)
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="dmriscope-dag-") as tmp:
        folder = Path(tmp)
        override = write_fixture(folder, args.subjects)
        for repeat in range(1, args.repeats + 1):
            seconds, cpu, jobs = dry_run(folder, override)
            rows.append((repeat, args.subjects, jobs, cpu, seconds))
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs (wall time grows with the load)")
    print(f"{'run':>3}  {'subjects':>8}  {'jobs':>6}  {'cpu_s':>6}  {'wall_s':>6}  {'target':>6}  ok")
    for repeat, subjects, jobs, cpu, seconds in rows:
        ok = seconds <= TARGET_S
        print(f"{repeat:>3}  {subjects:>8}  {jobs:>6}  {cpu:>6.1f}  {seconds:>6.1f}  {TARGET_S:>6.0f}  {ok}")
    if any(seconds > TARGET_S for *_, seconds in rows):
        sys.exit(1)


if __name__ == "__main__":
    main()
