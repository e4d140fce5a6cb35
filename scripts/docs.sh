#!/usr/bin/env bash
# Build the documentation site: docs/ -> docs/_build/html (open docs/_build/html/index.html).
# Sphinx + MyST-NB with warnings as errors; every {code-cell} on the pages runs in a Jupyter
# kernel at each build, so a stale example or a broken page fails this script (and the test
# command that calls it). Needs .venv with the `docs` extra (scripts/setup.sh installs it).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
PY=.venv/bin/python
"$PY" -c "import sphinx, myst_nb, furo, ipykernel, pandas, tqdm" 2>/dev/null \
  || { echo "[docs] the docs extra is missing: bash scripts/setup.sh openmpi" >&2; exit 1; }
rm -rf docs/_build
# document this checkout: the kernels that run the examples import hpcfutures from src/
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
# the kernel's own notice about its (loopback-only) TCP transport is not a documentation problem
start=$SECONDS
# sphinx's status, not grep's (grep fails when it has nothing to print); under pipefail a
# `|| true` here would reset PIPESTATUS and let a failed build pass
set +e
"$PY" -m sphinx -W --keep-going -q -b html docs docs/_build/html 2>&1 | grep -v -e "Kernel is running over TCP" -e "Executing notebook with kernel" -e "^[[:space:]]*$"
status=${PIPESTATUS[0]}
set -e
[ "$status" -eq 0 ] || { echo "[docs] build failed" >&2; exit "$status"; }
echo "[docs] built docs/_build/html in $((SECONDS - start)) s" >&2
