"""Where a workflow run's wall time goes, per rule: the rule's own computation against the per-job overhead.

Reads a finished run directory (the project root of a run, or any ``--directory``): every job's Snakemake
``benchmark:`` file (``benchmarks-out/<rule>/...tsv``, column ``s`` = the job's wall) and the timing line that
`dmriscope.io.run_script` writes last into every job's log (``logs/<rule>/...log``: the computation, and the
start-up before it: interpreter, Snakemake's script preamble, the script's imports). Prints one row per rule:

    jobs | mean wall | mean computation | mean start-up | rest (wall - computation - start-up: the job's exit,
    Snakemake's bookkeeping) | total wall | share of all job wall

With ``--run``, first runs Snakemake there (arguments after ``--``) and adds the Snakemake process's own CPU (its
utime + stime from /proc, sampled every 0.5 s; its jobs not included) and the run's wall. Usage::

    .venv/bin/python benchmarks/workflow_profile.py --dir RUN_DIR
    .venv/bin/python benchmarks/workflow_profile.py --dir "$(mktemp -d)" --run -- --cores 2 -s "$PWD/Snakefile" \
        --configfile "$PWD/config.yaml" --until split_cohort

Jobs whose log has no timing line (rules that run no dmriscope script, or logs of older code) count in the wall
columns only.
"""

from __future__ import annotations

import argparse
import csv
import math
import os
import re
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

from dmriscope.io import proc_stat

TIMING = re.compile(r"timing: computation ([0-9.]+|nan) s, start-up ([0-9.]+|nan) s")


def job_walls(run_dir: Path) -> dict[str, list[float]]:
    """Per rule, the wall seconds of each job from its benchmark TSV."""
    walls: dict[str, list[float]] = defaultdict(list)
    for tsv in sorted((run_dir / "benchmarks-out").rglob("*.tsv")):
        rule = tsv.relative_to(run_dir / "benchmarks-out").parts[0]
        with open(tsv) as handle:
            rows = list(csv.DictReader(handle, delimiter="\t"))
        if rows:
            walls[rule].append(float(rows[-1]["s"]))
    return walls


def job_timings(run_dir: Path) -> dict[str, list[tuple[float, float]]]:
    """Per rule, (computation, start-up) seconds of each job whose log has the timing line."""
    timings: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for log in sorted((run_dir / "logs").rglob("*.log")):
        matches = TIMING.findall(log.read_text(errors="replace"))
        if matches:
            rule = log.relative_to(run_dir / "logs").parts[0]
            timings[rule].append(tuple(float(v) for v in matches[-1]))
    return timings


def mean(values: list[float]) -> float:
    finite = [v for v in values if not math.isnan(v)]
    return sum(finite) / len(finite) if finite else math.nan


def profile_rows(run_dir: Path) -> list[dict]:
    """One row per rule with a benchmark file, sorted by total wall."""
    walls, timings = job_walls(run_dir), job_timings(run_dir)
    grand = sum(sum(w) for w in walls.values()) or 1.0
    rows = []
    for rule, wall in walls.items():
        computation = mean([c for c, _ in timings.get(rule, [])])
        startup = mean([s for _, s in timings.get(rule, [])])
        rows.append(
            {
                "rule": rule,
                "jobs": len(wall),
                "mean wall s": mean(wall),
                "mean computation s": computation,
                "mean start-up s": startup,
                "rest s": mean(wall) - computation - startup,
                "total wall s": sum(wall),
                "share": sum(wall) / grand,
            }
        )
    return sorted(rows, key=lambda r: -r["total wall s"])


def own_cpu(pid: int) -> float | None:
    """utime + stime (s) of one process, its children not included; None once it has gone."""
    fields = proc_stat(pid)
    return None if fields is None else (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_snakemake(run_dir: Path, args: list[str]) -> tuple[float, float]:
    """Run Snakemake in ``run_dir``; (wall s, the Snakemake process's own CPU s)."""
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "snakemake", *args], cwd=run_dir)
    cpu = 0.0
    while proc.poll() is None:
        sample = own_cpu(proc.pid)
        cpu = sample if sample is not None else cpu
        time.sleep(0.5)
    if proc.returncode:
        raise SystemExit(f"workflow_profile: snakemake exited with {proc.returncode} in {run_dir}")
    return time.perf_counter() - start, cpu


def print_table(rows: list[dict]) -> None:
    keys = list(rows[0])
    cell = lambda k, v: f"{v:.0%}" if k == "share" else f"{v:.2f}" if isinstance(v, float) else str(v)  # noqa: E731
    print("| " + " | ".join(keys) + " |")
    print("|" + "---|" * len(keys))
    for row in rows:
        print("| " + " | ".join(cell(k, row[k]) for k in keys) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path, default=Path("."), help="the run directory")
    parser.add_argument("--run", action="store_true", help="run snakemake there first (arguments after --)")
    parser.add_argument("snakemake_args", nargs="*")
    args = parser.parse_args()
    if args.run:
        wall, cpu = run_snakemake(args.dir, args.snakemake_args)
        print(f"run wall {wall:.1f} s; the Snakemake process's own CPU {cpu:.1f} s ({cpu / wall:.0%} of one core)\n")
    rows = profile_rows(args.dir)
    if not rows:
        raise SystemExit(f"workflow_profile: no benchmark files under {args.dir / 'benchmarks-out'}")
    print_table(rows)


if __name__ == "__main__":
    main()
