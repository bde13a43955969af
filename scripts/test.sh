#!/usr/bin/env bash
# Run the tuneprune test suite in .venv (created and filled on first use).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$ROOT/scripts/setup_venv.sh"
cd "$ROOT"
exec "$VENV/bin/python" -m pytest "$@"
