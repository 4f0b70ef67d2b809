"""How long indexing a BIDS dataset takes when Snakemake builds the DAG (cohort.source bids), by library.

    .venv/bin/python benchmarks/bids_index.py                  # 1,000 subjects, raw layout
    .venv/bin/python benchmarks/bids_index.py --subjects 100 1000 3000
    .venv/bin/python benchmarks/bids_index.py --pybids-path /tmp/pybids   # after pip install --target /tmp/pybids pybids

Writes an empty-file BIDS layout of N subjects (dataset_description.json, participants.tsv, per subject
sub-X_dwi.{nii.gz,bval,bvec,json}) and times, each in a fresh interpreter (import included, as a DAG build pays
it): bids2table's `index_dataset` (what dmriscope uses), dmriscope's own `dwi_candidates` on top of it, and pybids'
`BIDSLayout` (validate=False) when pybids is installed (it is not a dmriscope dependency).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RUNNERS = {
    "bids2table": "from bids2table import index_dataset; n = index_dataset(ROOT).num_rows",
    "dmriscope dwi_candidates": (
        "from dmriscope.cohort.bids import dwi_candidates; import pandas as pd; "
        "s = pd.read_csv(ROOT + '/participants.tsv', sep='\\t')['participant_id'].str[4:].tolist(); "
        "n = sum(len(v['dwi']) for v in dwi_candidates({'root': ROOT}, s).values())"
    ),
    "pybids BIDSLayout": (
        "import sys; sys.path[:0] = PYBIDS; import bids; n = len(bids.BIDSLayout(ROOT, validate=False).get(suffix='dwi', extension='.nii.gz'))"
    ),
}


def make_layout(root: Path, n: int) -> None:
    root.mkdir(parents=True)
    (root / "dataset_description.json").write_text(json.dumps({"Name": "bench", "BIDSVersion": "1.9.0"}))
    rows = [f"sub-{i:05d}\t{('patient', 'control')[i % 2]}\t{30 + i % 40}" for i in range(n)]
    (root / "participants.tsv").write_text("participant_id\tgroup\tage\n" + "\n".join(rows) + "\n")
    for i in range(n):
        folder = root / f"sub-{i:05d}" / "dwi"
        folder.mkdir(parents=True)
        for ext in ("nii.gz", "bval", "bvec"):
            (folder / f"sub-{i:05d}_dwi.{ext}").touch()
        (folder / f"sub-{i:05d}_dwi.json").write_text("{}")


def timed(code: str, root: Path, pybids: list[str]) -> tuple[float | None, str]:
    """Wall seconds of ``code`` in a fresh interpreter (None if it fails, e.g. the library is not installed)."""
    script = (
        f"import time; t = time.perf_counter(); ROOT = {str(root)!r}; PYBIDS = {pybids!r}\n{code}\n"
        "print(time.perf_counter() - t, n)"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    if result.returncode != 0:
        return None, result.stderr.strip().splitlines()[-1][:60]
    seconds, count = result.stdout.split()
    return float(seconds), count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subjects", type=int, nargs="+", default=[1000])
    parser.add_argument("--pybids-path", help="a folder holding pybids (pip install --target), for its row only")
    args = parser.parse_args()
    print(f"{'subjects':>8}  {'library':<26} {'wall s':>7}  result")
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.subjects:
            root = Path(tmp) / f"ds{n}"
            start = time.perf_counter()
            make_layout(root, n)
            print(f"{n:>8}  {'(writing the layout)':<26} {time.perf_counter() - start:>7.2f}")
            for name, code in RUNNERS.items():
                seconds, what = timed(code, root, [args.pybids_path] if args.pybids_path else [])
                shown = f"{seconds:>7.2f}" if seconds is not None else f"{'-':>7}"
                print(f"{n:>8}  {name:<26} {shown}  {what}")


if __name__ == "__main__":
    main()
