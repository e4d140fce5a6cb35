#!/usr/bin/env bash
# Set everything up and run the whole test suite:
#   1. every test in .venv (Open MPI);
#   2. the MPI tests again in .venv-mpich (MPICH).
# Extra arguments go to both pytest runs.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh all
source scripts/env.sh
echo "=== all tests, Open MPI ==="
.venv/bin/python -m pytest -p no:cacheprovider -q "$@" tests
echo "=== MPI tests, MPICH ==="
.venv-mpich/bin/python -m pytest -p no:cacheprovider -q -m mpi "$@" tests
