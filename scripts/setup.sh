#!/usr/bin/env bash
# One-time, idempotent setup: system dataset package (where apt exists), a venv, pinned requirements.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
PY=${PYTHON:-python3}

# Offline Fashion-MNIST comes from Debian's dataset-fashion-mnist (gzipped IDX files).
if [ ! -d /usr/share/datasets/fashion-mnist ] && command -v apt-get >/dev/null 2>&1; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1 && SUDO=sudo
  ($SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq dataset-fashion-mnist) \
    || echo "warning: could not install dataset-fashion-mnist; prepare will try torchvision's download" >&2
fi

if [ ! -x "$VENV/bin/python" ]; then
  "$PY" -m venv "$VENV"
fi
# Re-install only when requirements.txt changed since the last successful install.
stamp="$VENV/.requirements.sha256"
want=$(sha256sum requirements.txt | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  "$VENV/bin/pip" install -q --upgrade pip
  "$VENV/bin/pip" install -q -r requirements.txt
  "$VENV/bin/pip" install -q -e . --no-deps
  echo "$want" > "$stamp"
fi
# `dvc plots show` offline: vega scripts inlined into .dvc/plots/offline.html (from the npm registry).
[ -s .dvc/plots/offline.html ] && grep -q 'vega-embed' .dvc/plots/offline.html || "$VENV/bin/python" scripts/plots_template.py || true
echo "setup ok: $("$VENV/bin/python" -c 'import torch,torchvision,timm,dvc;print("torch",torch.__version__,"torchvision",torchvision.__version__,"timm",timm.__version__,"dvc",dvc.__version__)')"
