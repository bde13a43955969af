#!/usr/bin/env bash
# Create or reuse .venv at the repository root and install tuneprune into it, with the exact
# versions of requirements.lock (the ones the test suite passed on; see docs/installation.md).
# Sourced by scripts/demo.sh and scripts/test.sh; safe to run on its own.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
PY="${PYTHON:-python3}"

export RAY_USAGE_STATS_ENABLED=0 MLFLOW_DISABLE_TELEMETRY=true DO_NOT_TRACK=1
export PIP_DISABLE_PIP_VERSION_CHECK=1

# Run "$@", saying every 10 s that it is still running: an installation is never silent for long.
with_heartbeat() {
    local label="$1" start=$SECONDS pid
    shift
    "$@" &
    pid=$!
    while kill -0 "$pid" 2>/dev/null; do
        sleep 2
        if kill -0 "$pid" 2>/dev/null && (( SECONDS - start >= 10 && (SECONDS - start) % 10 < 2 )); then
            echo "[setup] $label: $((SECONDS - start)) s"
        fi
    done
    wait "$pid"
}

if [ ! -x "$VENV/bin/python" ]; then
    echo "[setup] creating $VENV"
    "$PY" -m venv "$VENV"
fi
if ! "$VENV/bin/python" -c "import torch, torchvision" >/dev/null 2>&1; then
    echo "[setup] installing torch 2.14.1 / torchvision 0.29.1 (a few minutes)"
    with_heartbeat "installing torch" "$VENV/bin/pip" install -q torch==2.14.1 torchvision==0.29.1
fi
# (Re)install whenever the lock or pyproject.toml differs from the last installation's.
STAMP="$VENV/.tuneprune-installed"
wanted="$(cat "$ROOT/requirements.lock" "$ROOT/pyproject.toml" | sha256sum | cut -d' ' -f1)"
if [ "$(cat "$STAMP" 2>/dev/null)" != "$wanted" ] || ! "$VENV/bin/python" -c "import tuneprune" >/dev/null 2>&1; then
    echo "[setup] installing the locked dependencies (requirements.lock) and tuneprune"
    with_heartbeat "installing requirements.lock" "$VENV/bin/pip" install -q -r "$ROOT/requirements.lock"
    "$VENV/bin/pip" install -q --no-deps -e "$ROOT[test]"
    "$VENV/bin/pip" check
    echo "$wanted" >"$STAMP"
fi
