#!/usr/bin/env bash
# Set up (idempotent) and run the whole pipeline on the current params.yaml (default profile): dvc repro.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
source .venv/bin/activate
dvc repro "$@"
