#!/usr/bin/env bash
# Run the tuneprune test suite in .venv (created and filled on first use).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$ROOT/scripts/setup_venv.sh"
cd "$ROOT"

# --- PostgreSQL for tests/system/test_cluster.py (cluster mode) --------------------------
# Its server binaries are a system package: as root, install Debian's when none is found
# (apt-get, non-interactive); otherwise, or if that fails, those tests skip with the reason.
# TUNEPRUNE_TEST_PG_BIN tells the tests where initdb and pg_ctl are.
pg_bin_dir() {
    local d
    d="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)"
    if [ -n "$d" ] && [ -x "$d/initdb" ]; then echo "$d"; elif command -v initdb >/dev/null 2>&1; then dirname "$(command -v initdb)"; fi
}
if [ -z "${TUNEPRUNE_TEST_PG_BIN:-}" ] && [ -z "$(pg_bin_dir)" ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "[test] installing PostgreSQL (apt-get install postgresql) for tests/system/test_cluster.py"
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql; } >/dev/null 2>&1 \
        || echo "[test] could not install PostgreSQL: its tests will be skipped"
fi
if [ -z "${TUNEPRUNE_TEST_PG_BIN:-}" ] && [ -n "$(pg_bin_dir)" ]; then export TUNEPRUNE_TEST_PG_BIN="$(pg_bin_dir)"; fi
# -------------------------------------------------------------------------------------------

# --- Fashion-MNIST for tests/data/test_idx.py and the studies (Debian's dataset-fashion-mnist) ---
if [ ! -d /usr/share/datasets/fashion-mnist ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "[test] installing Fashion-MNIST (apt-get install dataset-fashion-mnist) for tests/data/test_idx.py"
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist; } >/dev/null 2>&1 \
        || echo "[test] could not install dataset-fashion-mnist: its test will be skipped"
fi
# -------------------------------------------------------------------------------------------

exec "$VENV/bin/python" -m pytest "$@"
