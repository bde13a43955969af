#!/usr/bin/env bash
# An MLflow tracking server for tuneprune runs on a cluster: a database backend store
# (PostgreSQL) and served artifacts, so Ray workers on any node log runs, metrics and
# artifacts over HTTP to one place.
#
#   mlflow-server.sh start --backend-store-uri postgresql://USER@HOST:PORT/mlflow
#                          [--artifacts-destination DIR_OR_URI] [--host 127.0.0.1] [--port 5000]
#                          [--workers 2] [--dir DIR] [--timeout 120] [-- EXTRA MLFLOW SERVER ARGS]
#   mlflow-server.sh stop   [--dir DIR] [--grace 10]
#   mlflow-server.sh status [--dir DIR]
#
# The server binds to 127.0.0.1 unless --host says otherwise; see docs/cluster.md before
# exposing it (SSH tunnel, or a reverse proxy with TLS and authentication; for a host other
# than localhost pass `-- --allowed-hosts NAME:PORT`). Artifacts are served (--serve-artifacts):
# clients upload and download through the server, which stores them under
# --artifacts-destination (a local directory, default DIR/artifacts, or s3://, gs://, ...).
# The database password is not put on the command line: keep it in a libpq password file
# (PGPASSFILE, see scripts/postgres.sh env) or pass the URI in MLFLOW_BACKEND_STORE_URI.
#
# `start` returns once GET /health answers 200 (or fails after --timeout seconds); the
# server runs in its own process group, whose leader's pid is in DIR/mlflow.pid; `stop`
# ends that group. DIR defaults to /tmp/tuneprune-mlflow.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/cluster/lib.sh"

usage() { sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
[ $# -ge 1 ] || usage
ACTION="$1"
shift
DIR=/tmp/tuneprune-mlflow HOST=127.0.0.1 PORT=5000 WORKERS=2 TIMEOUT=120 GRACE=10
BACKEND="${MLFLOW_BACKEND_STORE_URI:-}" ARTIFACTS=""
EXTRA=()
while [ $# -gt 0 ]; do
    case "$1" in
        --backend-store-uri) BACKEND="$2"; shift 2 ;;
        --artifacts-destination) ARTIFACTS="$2"; shift 2 ;;
        --host) HOST="$2"; shift 2 ;;
        --port) PORT="$2"; shift 2 ;;
        --workers) WORKERS="$2"; shift 2 ;;
        --dir) DIR="$2"; shift 2 ;;
        --timeout) TIMEOUT="$2"; shift 2 ;;
        --grace) GRACE="$2"; shift 2 ;;
        --) shift; EXTRA=("$@"); break ;;
        -h|--help) usage ;;
        *) tp_die "unknown option $1 (see --help)" ;;
    esac
done
mkdir -p "$DIR"
DIR="$(cd "$DIR" && pwd)"
PIDFILE="$DIR/mlflow.pid"
LOG="$DIR/mlflow.log"

start() {
    [ -n "$BACKEND" ] || tp_die "--backend-store-uri (or MLFLOW_BACKEND_STORE_URI) is required, e.g. postgresql://tuneprune@127.0.0.1:5432/mlflow"
    if tp_alive "$PIDFILE"; then tp_die "an MLflow server is already running from $DIR (pid $(cat "$PIDFILE"))"; fi
    local probe="$HOST"
    [ "$HOST" = 0.0.0.0 ] && probe=127.0.0.1
    if (exec 3<>"/dev/tcp/$probe/$PORT") 2>/dev/null; then tp_die "$HOST:$PORT is already in use"; fi
    if [ -z "$ARTIFACTS" ]; then ARTIFACTS="$DIR/artifacts"; fi
    case "$ARTIFACTS" in
        *://*) ;;
        *) mkdir -p "$ARTIFACTS"; ARTIFACTS="$(cd "$ARTIFACTS" && pwd)" ;;
    esac
    # The database must be reachable first: a wrong URI otherwise shows as a /health timeout.
    "$TP_BIN/python" - "$BACKEND" <<'EOF' || tp_die "backend store unreachable (see above)"
import sys
from tuneprune.tracking.locations import check_tracking_reachable
from tuneprune.shared.config import ConfigError
try:
    check_tracking_reachable(sys.argv[1])
except ConfigError as err:
    sys.exit(f"mlflow-server.sh: {err}")
EOF
    : >"$LOG"
    # The URI goes through the environment (click's envvar), not argv: no password in `ps`.
    # MLflow's background job runner (LLM judges, trace archival; a dozen processes) is of
    # no use to tuneprune: off unless MLFLOW_SERVER_ENABLE_JOB_EXECUTION says otherwise.
    MLFLOW_SERVER_ENABLE_JOB_EXECUTION="${MLFLOW_SERVER_ENABLE_JOB_EXECUTION:-false}" \
    MLFLOW_BACKEND_STORE_URI="$BACKEND" tp_start_group "$PIDFILE" "$LOG" "$TP_BIN/mlflow" server \
        --serve-artifacts --artifacts-destination "$ARTIFACTS" \
        --host "$HOST" --port "$PORT" --workers "$WORKERS" ${EXTRA[@]+"${EXTRA[@]}"}
    local url="http://$HOST:$PORT" i
    [ "$HOST" = 0.0.0.0 ] && url="http://127.0.0.1:$PORT"
    for i in $(seq 1 $((TIMEOUT * 4))); do
        if "$TP_BIN/python" -c "import sys, urllib.request; sys.exit(urllib.request.urlopen('$url/health', timeout=2).status != 200)" 2>/dev/null; then
            echo "MLflow server up at $url (pid $(cat "$PIDFILE"), log $LOG, artifacts $ARTIFACTS)"
            echo "tuneprune search SPACE.yaml --tracking-uri $url ..."
            return 0
        fi
        if ! tp_alive "$PIDFILE"; then
            tail -n 30 "$LOG" >&2
            rm -f "$PIDFILE"
            tp_die "mlflow server exited; see $LOG"
        fi
        sleep 0.25
    done
    tail -n 30 "$LOG" >&2
    tp_stop_group "$PIDFILE" 5
    tp_die "no answer on $url/health within $TIMEOUT s; see $LOG"
}

case "$ACTION" in
    start) start ;;
    stop) tp_stop_group "$PIDFILE" "$GRACE" ;;
    status)
        if tp_alive "$PIDFILE"; then echo "running (pid $(cat "$PIDFILE"), log $LOG)"; else echo "not running"; exit 1; fi
        ;;
    *) usage ;;
esac
