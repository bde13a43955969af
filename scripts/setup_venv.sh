#!/usr/bin/env bash
# Create or reuse .venv at the repository root and install tuneprune into it.
# Sourced by scripts/demo.sh and scripts/test.sh; safe to run on its own.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
PY="${PYTHON:-python3}"

export RAY_USAGE_STATS_ENABLED=0 MLFLOW_DISABLE_TELEMETRY=true DO_NOT_TRACK=1
export PIP_DISABLE_PIP_VERSION_CHECK=1

if [ ! -x "$VENV/bin/python" ]; then
    echo "[setup] creating $VENV"
    "$PY" -m venv "$VENV"
fi
if ! "$VENV/bin/python" -c "import torch, torchvision" >/dev/null 2>&1; then
    echo "[setup] installing torch 2.14.1 / torchvision 0.29.1"
    "$VENV/bin/pip" install -q torch==2.14.1 torchvision==0.29.1
fi
# Reinstall only when pyproject.toml changed since the last install.
STAMP="$VENV/.tuneprune-installed"
if [ ! -f "$STAMP" ] || [ "$ROOT/pyproject.toml" -nt "$STAMP" ] \
    || ! "$VENV/bin/python" -c "import tuneprune" >/dev/null 2>&1; then
    echo "[setup] installing tuneprune and its dependencies"
    "$VENV/bin/pip" install -q -e "$ROOT[test]"
    touch "$STAMP"
fi
