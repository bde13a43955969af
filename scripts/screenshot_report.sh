#!/usr/bin/env bash
# Screenshot a tuneprune HTML report in headless Chromium, to check that it renders offline.
#   scripts/screenshot_report.sh runs/NAME/report/report.html OUT.png [WIDTHxHEIGHT]
# Installs Debian's chromium when it is missing (needs root and the apt mirrors).
set -euo pipefail

if [[ $# -lt 2 ]]; then
    echo "usage: $0 REPORT.html OUT.png [WIDTH,HEIGHT (default 1280,4000)]" >&2
    exit 2
fi
report=$(realpath "$1")
out=$(realpath -m "$2")
size=${3:-1280,4000}
[[ -f "$report" ]] || { echo "$0: $1: no such file" >&2; exit 2; }

if ! command -v chromium >/dev/null; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi

profile=$(mktemp -d)
trap 'rm -rf "$profile"' EXIT
chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
    --disable-background-networking --disable-component-update --disable-sync \
    --user-data-dir="$profile" --screenshot="$out" --window-size="$size" "file://$report" 2>/dev/null
[[ -s "$out" ]] || { echo "$0: chromium wrote no screenshot" >&2; exit 1; }
echo "$out"
