"""Shared I/O: checked NIfTI loading, atomic writes, per-job logging, one-line errors.

Every stage reads and writes through these helpers so that bad input stops with one line naming the file or
subject, and nothing half-written is left at an output path (writes go to a temporary name in the same folder
and are renamed into place only when complete).
"""

from __future__ import annotations

import contextlib
import gzip
import logging
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np

log = logging.getLogger("dmriscope")


class InputError(Exception):
    """Bad input the user can fix; reported as one line naming the file, subject or config key."""


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it onto `path` only if the block succeeds.

    The temporary name keeps the final suffix (e.g. ``.nii.gz``) so writers that infer the format still work.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = "".join(path.suffixes)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name.split('.')[0]}.", suffix=f".part{suffix}", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    umask = os.umask(0)
    os.umask(umask)
    try:
        yield tmp_path
        if tmp_path.exists():  # mkstemp creates 0600; give the file the permissions a plain open() would
            os.chmod(tmp_path, 0o666 & ~umask)
        os.replace(tmp_path, path)
    finally:
        tmp_path.unlink(missing_ok=True)


def save_nifti(
    data: np.ndarray, affine: np.ndarray, path: str | os.PathLike, dtype: Any = np.float32, compresslevel: int = 1
) -> None:
    """Write a NIfTI image atomically; a .nii.gz at gzip `compresslevel` (nibabel's default 1; 0 stores the data
    uncompressed inside a valid .gz: for big intermediates that only the next job reads)."""
    img = nib.Nifti1Image(np.asarray(data, dtype=dtype), affine)
    img.header.set_xyzt_units("mm", "sec")
    with atomic_path(path) as tmp:
        if compresslevel == 1 or not str(path).endswith(".gz"):
            nib.save(img, tmp)
        else:
            with gzip.open(tmp, "wb", compresslevel=compresslevel) as handle:
                img.to_stream(handle)  # streamed: no second in-memory copy of a 2 GB HCP-size DWI


def load_nifti(
    path: str | os.PathLike, *, ndim: int | None = None, finite: bool = True, dtype: Any = np.float32
) -> tuple[np.ndarray, np.ndarray]:
    """Load a NIfTI image fully, turning every way it can be broken into a one-line `InputError`.

    Checks: the file exists and decompresses completely (a truncated .nii.gz fails here, not later), has the
    expected number of dimensions, and (``finite=True``) holds no NaN or Inf.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: file not found")
    try:
        img = nib.load(path)
        data = np.asarray(img.dataobj, dtype=dtype)
    except Exception as exc:  # nibabel raises zlib/EOF/OSError/ImageFileError variants for truncated files
        raise InputError(f"{path}: cannot read NIfTI ({type(exc).__name__}: {exc})") from None
    if ndim is not None and data.ndim != ndim:
        raise InputError(f"{path}: expected a {ndim}D image, got shape {data.shape}")
    if finite and not np.all(np.isfinite(data)):
        n_bad = int(np.size(data) - np.count_nonzero(np.isfinite(data)))
        raise InputError(f"{path}: {n_bad} NaN/Inf values")
    return data, img.affine


def load_mask(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """Load a 3D binary mask; an empty mask is an `InputError`."""
    data, affine = load_nifti(path, ndim=3)
    mask = data > 0
    if not mask.any():
        raise InputError(f"{path}: brain mask is empty")
    return mask, affine


def setup_logging(log_file: str | os.PathLike | None, level: int = logging.INFO) -> None:
    """Log to `log_file` (the rule's log:) and to stderr, with timestamps."""
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_file:
        Path(log_file).parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(log_file, mode="w"))
    logging.basicConfig(
        level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", handlers=handlers, force=True
    )
    logging.captureWarnings(True)


# the last line of every job's log (benchmarks/workflow_profile.py reads it): the rule's own computation, and what the
# job spent before it (interpreter start-up, Snakemake's script preamble, the script's imports)
TIMING_FORMAT = "timing: computation %.3f s, start-up %.3f s"


def proc_stat(pid: int | str = "self") -> list[str] | None:
    """The fields of /proc/<pid>/stat after the command name (field 3 onwards; Linux), or None where it is not there
    (another OS, or the process has gone)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def process_age() -> float | None:
    """Seconds since this process started (Linux /proc; None where it is not there)."""
    fields = proc_stat()
    try:
        uptime = float(Path("/proc/uptime").read_text().split()[0])
        return uptime - int(fields[19]) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, TypeError):
        return None


def run_script(main: Callable[..., Any], log_file: str | os.PathLike | None, **kwargs: Any) -> None:
    """Entry point for workflow scripts: log to the rule's log; an `InputError` exits with one line.

    Unexpected exceptions keep their traceback (they are bugs, not bad input).
    """
    setup_logging(log_file)
    startup = process_age()
    start = time.perf_counter()
    try:
        main(**kwargs)
        log.info(TIMING_FORMAT, time.perf_counter() - start, startup if startup is not None else float("nan"))
    except InputError as exc:
        log.error("%s", exc)
        sys.stderr.flush()
        raise SystemExit(f"dmriscope error: {exc}") from None


def progress(iterable: Any, desc: str, total: int | None = None) -> Any:
    """A tqdm progress bar that stays quiet when stderr is not a terminal (logs get a few lines, not thousands)."""
    from tqdm.auto import tqdm

    return tqdm(iterable, desc=desc, total=total, mininterval=5.0 if not sys.stderr.isatty() else 0.1, file=sys.stderr)


def read_history(path: str | os.PathLike) -> list[dict]:
    """The per-epoch records of a history.jsonl (training or pretraining)."""
    import json

    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
