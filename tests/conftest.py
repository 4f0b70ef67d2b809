"""Shared fixtures. Tests run from the project root; workflow tests copy the project into tmp dirs."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[1]


def pytest_collection_modifyitems(config, items):
    """SLURM tests last (a stable sort: the rest keep their order). Once they have installed SLURM and stopped its
    daemons, every later `snakemake` start waits 9 s: the SLURM executor plugin runs `scontrol show config` (10 s
    timeout) when Snakemake loads it, and scontrol retries an absent controller."""
    items.sort(key=lambda item: item.get_closest_marker("slurm") is not None)


def load_benchmark(name: str) -> ModuleType:
    """A script of benchmarks/ imported as a module (benchmarks/ is no package), for testing its functions."""
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def project_root() -> Path:
    return ROOT


def snakemake_command(root: Path, workdir: Path, *args: str, extra_config: Path | None = None) -> list[str]:
    """The workflow on configs/ci.yaml (plus ``extra_config``) in ``workdir``, 2 cores."""
    configs = [str(root / "configs" / "ci.yaml")] + ([str(extra_config)] if extra_config else [])
    command = [sys.executable, "-m", "snakemake", "--snakefile", str(root / "Snakefile"), "--directory", str(workdir)]
    return [*command, "--cores", "2", *args, "--configfile", *configs]


@pytest.fixture(scope="session")
def ci_run(project_root, tmp_path_factory) -> Path:
    """The whole default DAG on configs/ci.yaml, once per session (test_workflow_full and _kfold read it)."""
    workdir = tmp_path_factory.mktemp("ci_full")
    result = subprocess.run(snakemake_command(project_root, workdir), capture_output=True, text=True, timeout=1800)
    assert result.returncode == 0, result.stderr[-4000:]
    return workdir
