#!/usr/bin/env bash
# Build the wheel and the sdist, check their metadata (twine check), install each into a
# fresh virtual environment and run the plain tests (no MPI, no SLURM) against the wheel
# from outside the source tree, so they use the installed copy, not src/.
# Usage: bash scripts/package.sh   (needs .venv from scripts/setup.sh; PyPI for build deps)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"
PY="$ROOT/.venv/bin/python"
WORK="$(mktemp -d /tmp/hpcfutures-package.XXXXXX)"
trap 'rm -rf "$WORK"' EXIT

echo "[package] python -m build" >&2
"$PY" -m build --outdir "$WORK/dist" . > "$WORK/build.log" 2>&1 || { cat "$WORK/build.log"; exit 1; }
ls "$WORK/dist"
"$PY" -m twine check --strict "$WORK"/dist/*

wheel=$(ls "$WORK"/dist/*.whl)
sdist=$(ls "$WORK"/dist/*.tar.gz)
# what a wheel must hold: the typed marker, the worker entry points, the command
python3 - "$wheel" <<'PY'
import sys, zipfile
names = set(zipfile.ZipFile(sys.argv[1]).namelist())
need = ["hpcfutures/py.typed", "hpcfutures/worker/one_shot.py", "hpcfutures/worker/interactive.py"]
missing = [n for n in need if n not in names]
assert not missing, f"the wheel lacks {missing}"
assert any(n.endswith("entry_points.txt") for n in names), "the wheel has no entry points (hpcfutures command)"
PY

PYTHON="${PYTHON:-python3}"
echo "[package] sdist into a fresh venv" >&2
"$PYTHON" -m venv "$WORK/venv-sdist"
"$WORK/venv-sdist/bin/pip" install -q --disable-pip-version-check "$sdist" 2>&1 | grep -v '^WARNING: Location' || true
(cd "$WORK" && venv-sdist/bin/python -c "
import hpcfutures, importlib.metadata as md
from hpcfutures import SingleNodeExecutor
assert hpcfutures.__version__ == md.version('hpcfutures'), hpcfutures.__version__
assert 'site-packages' in hpcfutures.__file__, hpcfutures.__file__
with SingleNodeExecutor() as exe:
    assert exe.submit(sum, [1, 2, 3]).result() == 6
print('[package] sdist install works:', hpcfutures.__version__)
")
"$WORK/venv-sdist/bin/hpcfutures" --help > /dev/null

echo "[package] wheel into a fresh venv, plain tests" >&2
"$PYTHON" -m venv "$WORK/venv-wheel"
"$WORK/venv-wheel/bin/pip" install -q --disable-pip-version-check "$wheel[test,progress,graph]" pandas 2>&1 | grep -v '^WARNING: Location' || true
cp -r tests "$WORK/tests"
# the suite's pytest settings, without the source tree's pyproject (which would put
# nothing of src/ on the path, but keep the checks honest: run from elsewhere)
"$PY" - "$WORK/pytest.ini" <<'PY'
import sys, tomllib
conf = tomllib.load(open("pyproject.toml", "rb"))["tool"]["pytest"]["ini_options"]
with open(sys.argv[1], "w") as f:
    f.write("[pytest]\ntestpaths = tests\ntimeout = %d\nmarkers =\n" % conf["timeout"])
    f.writelines(f"    {m}\n" for m in conf["markers"])
PY
(cd "$WORK" && env -u PYTHONPATH venv-wheel/bin/python -m pytest -p no:cacheprovider -q -m "not mpi and not slurm and not flux and not flux_multinode" \
   -c pytest.ini "$@" tests)
echo "[package] OK: wheel and sdist build, pass twine check, install and work in fresh venvs" >&2
