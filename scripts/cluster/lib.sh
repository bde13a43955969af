# Shared helpers of scripts/cluster/*.sh, scripts/mlflow-server.sh and scripts/postgres.sh.
# Source it; it defines functions and the telemetry variables, and runs nothing.
#
# Background services are started in their own session (setsid), so the session leader's
# pid is also the process-group id; a pid file holds it and `stop` ends the whole group
# (and any descendant that left it) - never processes found by name, so several clusters,
# servers or other people's Ray instances on the same machine are left alone.

export RAY_USAGE_STATS_ENABLED=0 MLFLOW_DISABLE_TELEMETRY=true DO_NOT_TRACK=1

TP_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
# The repository's virtualenv when there is one, else whatever is on PATH.
if [ -z "${TP_BIN:-}" ]; then
    if [ -x "$TP_ROOT/.venv/bin/python" ]; then TP_BIN="$TP_ROOT/.venv/bin"; else TP_BIN="$(dirname "$(command -v python3)")"; fi
fi

tp_die() { echo "$(basename "$0"): error: $*" >&2; exit 2; }
tp_log() { echo "[$(basename "$0")] $*" >&2; }

# tp_alive PIDFILE: true when the pid file names a live process. A process killed and not yet
# reaped (a zombie: init reaps a killed server's leader when it gets to it) is not alive.
tp_alive() {
    local pid state
    [ -f "$1" ] || return 1
    pid="$(cat "$1" 2>/dev/null)" || return 1
    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 1
    state="$(sed 's/.*) //' "/proc/$pid/stat" 2>/dev/null | cut -d' ' -f1)"
    [ "$state" != Z ]
}

# tp_start_group PIDFILE LOGFILE CMD...: run CMD in a new session, in the background,
# stdout+stderr to LOGFILE; the pid file gets the session leader's pid (= its pgid).
tp_start_group() {
    local pidfile="$1" logfile="$2"
    shift 2
    rm -f "$pidfile"
    # bash -c writes its own pid ($$), then execs CMD, so the pid is CMD's and the group's.
    setsid bash -c 'echo $$ > "$0"; exec "$@"' "$pidfile" "$@" </dev/null >>"$logfile" 2>&1 &
    local i
    for i in $(seq 1 50); do
        [ -s "$pidfile" ] && return 0
        sleep 0.1
    done
    tp_die "could not start $1 (no pid file); see $logfile"
}

# tp_descendants PID: PID's descendants (children first seen, recursively), one per line.
tp_descendants() {
    local child
    for child in $(ps -o pid= --ppid "$1" 2>/dev/null); do
        echo "$child"
        tp_descendants "$child"
    done
}

# tp_stop_group PIDFILE [GRACE_S]: SIGTERM the group leader, wait up to GRACE_S seconds
# (default 20) for the group to go, then SIGKILL the group and every descendant left.
tp_stop_group() {
    local pidfile="$1" grace="${2:-20}" pid pids i
    if ! [ -f "$pidfile" ]; then
        tp_log "not running (no $pidfile)"
        return 0
    fi
    pid="$(cat "$pidfile")"
    if [ -z "$pid" ] || ! kill -0 "$pid" 2>/dev/null; then
        # The leader is gone; its group may not be.
        [ -n "$pid" ] && kill -KILL -- "-$pid" 2>/dev/null || true
        rm -f "$pidfile"
        tp_log "not running (stale $pidfile)"
        return 0
    fi
    pids="$pid $(tp_descendants "$pid" | tr '\n' ' ')"
    kill -TERM "$pid" 2>/dev/null || true
    for i in $(seq 1 $((grace * 5))); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.2
    done
    # Whatever is left, group members and descendants that made their own group alike.
    pids="$pids $(tp_descendants "$pid" 2>/dev/null | tr '\n' ' ')"
    kill -KILL -- "-$pid" 2>/dev/null || true
    # shellcheck disable=SC2086
    kill -KILL $pids 2>/dev/null || true
    rm -f "$pidfile"
    tp_log "stopped process group $pid"
}

# tp_wait_tcp HOST PORT TIMEOUT_S: wait until HOST:PORT accepts connections.
tp_wait_tcp() {
    local host="$1" port="$2" timeout="$3" i
    for i in $(seq 1 $((timeout * 5))); do
        if (exec 3<>"/dev/tcp/$host/$port") 2>/dev/null; then return 0; fi
        sleep 0.2
    done
    return 1
}
