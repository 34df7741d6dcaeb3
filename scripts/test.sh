#!/usr/bin/env bash
# Set up (idempotent) and run the test suite: fast unit tests + one end-to-end `dvc` run of the smoke profile.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
source .venv/bin/activate
python -m pytest -q "$@"
