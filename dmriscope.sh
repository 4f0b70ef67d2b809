#!/usr/bin/env bash
# dmriscope's two entry points (README.md):
#   bash dmriscope.sh run [snakemake args...]   set up .venv if needed, run the workflow (default: synthetic cohort)
#   bash dmriscope.sh test [pytest args...]     set up .venv with test tools, run format/lint/dry-run checks + tests
# Needs Python 3.11 (python3.11 or python3). torch is pinned to 2.13.0 and installed first, so pip never pulls
# a multi-GB CUDA build; the other dependencies come from pyproject.toml in one pip call.
set -euo pipefail
cd "$(dirname "$0")"
VENV="${DMRISCOPE_VENV:-.venv}"

python_bin() {
  for candidate in python3.11 python3; do
    if command -v "$candidate" >/dev/null && "$candidate" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
      echo "$candidate"; return
    fi
  done
  echo "dmriscope: Python 3.11 is required (python3.11 or python3)" >&2; exit 1
}

setup() {  # $1: pip extras ("" or "[test]")
  local stamp="$VENV/.dmriscope-installed$1"
  if [ -f "$stamp" ] && [ "$stamp" -nt pyproject.toml ]; then return; fi
  [ -x "$VENV/bin/python" ] || "$(python_bin)" -m venv "$VENV"
  "$VENV/bin/python" -m pip install -q --upgrade pip
  "$VENV/bin/python" -m pip install -q "torch==2.13.0"
  "$VENV/bin/python" -m pip install -q -e ".$1"
  if [ "$1" = "[test]" ]; then  # real in-vivo DKI voxels for tests/test_dki_agreement.py: dmipy's data files only
    "$VENV/bin/python" -m pip install -q --no-deps "dmipy==1.0.5"  # (its scipy==1.4.1 pin has no Python 3.11 build)
    # TractSeg's MNI FA template for tests/test_template_fsl.py (template.fa: tractseg): its data file only; its own
    # dependencies (fury, pygfx, wgpu, ...) are for its viewer, which dmriscope never imports
    "$VENV/bin/python" -m pip install -q --no-deps "TractSeg==2.10"
  fi
  touch "$stamp"
}

checks() {  # the CI order of model Snakemake workflows: format -> lint -> dry-runs
  "$VENV/bin/ruff" check src tests workflow_scripts benchmarks
  "$VENV/bin/ruff" format --check src tests workflow_scripts benchmarks
  "$VENV/bin/snakefmt" --check Snakefile rules/
  "$VENV/bin/snakemake" --lint --cores 1
  for config in config.yaml configs/ci.yaml configs/null.yaml; do
    "$VENV/bin/snakemake" -n --quiet rules --cores 1 --configfile "$config" >/dev/null
  done
}

case "${1:-}" in
  run)
    shift; setup ""
    exec "$VENV/bin/snakemake" "$@" ;;
  test)
    shift; setup "[test]"
    export PATH="$PWD/$VENV/bin:$PATH"
    checks
    exec "$VENV/bin/pytest" "$@" ;;
  *)
    echo "usage: bash dmriscope.sh run|test [args...]" >&2; exit 2 ;;
esac
