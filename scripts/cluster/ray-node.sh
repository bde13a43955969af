#!/usr/bin/env bash
# Start, join, inspect and stop Ray nodes for `tuneprune search|evolve --address ...`.
#
#   ray-node.sh head   [--dir DIR] [--ip IP] [--port 6379] [--num-cpus N] [--num-gpus N]
#                      [--ports BASE] [--grace S] [-- EXTRA RAY START ARGS]
#   ray-node.sh worker --address HEAD_IP:PORT [--dir DIR] [--ip IP] [--num-cpus N] [--num-gpus N]
#                      [--ports BASE] [-- EXTRA RAY START ARGS]
#   ray-node.sh stop   [--dir DIR] [--grace S]
#   ray-node.sh status [--dir DIR]
#
# Every node gets a node directory DIR (default /tmp/tuneprune-ray-head or
# /tmp/tuneprune-ray-worker): its pid file, log and, with --dir given, Ray's --temp-dir and
# a file node_id with the node's Ray id.
# Keep DIR short (Ray puts Unix sockets below it; their paths are limited to 107 bytes).
# Without --dir, Ray uses its own /tmp/ray, which is what `--address auto` reads on a
# head node; with --dir, export RAY_ADDRESS=HEAD_IP:PORT (printed below) for `auto`.
#
# The node runs `ray start --block` in its own process group; `stop` ends that group
# (not every Ray process on the machine, as `ray stop` does), so several nodes can share a
# machine: that is how tests/system/test_cluster.py runs a two-node cluster on 127.0.0.1.
#
# --ip defaults to 127.0.0.1: a cluster that only this machine can reach. On a real
# cluster pass the node's address on the private cluster network (never a public one;
# Ray's ports carry no encryption and must be reachable only from the other nodes).
#
# --ports BASE pins every port of the node to BASE..BASE+99 (easy to open in a firewall,
# and needed when two nodes share one machine):
#   BASE    node manager          BASE+4  runtime-env agent
#   BASE+1  object manager        BASE+5  metrics export
#   BASE+2  dashboard agent http  BASE+6  (unused: Ray client, needs ray[client])
#   BASE+3  dashboard agent grpc  BASE+7  dashboard (head, only if enabled)
#   BASE+10..BASE+99              worker processes
# plus the head's --port (GCS, default 6379). Without --ports, Ray's defaults apply.
#
# Authentication: Ray >= 2.5x enables token authentication for new clusters. Every node and
# every driver must present the same token: export RAY_AUTH_MODE=token and RAY_AUTH_TOKEN (or
# RAY_AUTH_TOKEN_PATH) on all of them, or copy ~/.ray/auth_token from the head (`ray
# get-auth-token`). A head finding a token turns token mode on by itself; a worker node, and a
# driver given the head's address, do so only with RAY_AUTH_MODE=token.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() { sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }

[ $# -ge 1 ] || usage
ACTION="$1"
shift
DIR="" IP="127.0.0.1" PORT=6379 ADDRESS="" CPUS="" GPUS="" BASE="" GRACE=20 DASHBOARD=false
EXTRA=()
while [ $# -gt 0 ]; do
    case "$1" in
        --dir) DIR="$2"; shift 2 ;;
        --ip) IP="$2"; shift 2 ;;
        --port) PORT="$2"; shift 2 ;;
        --address) ADDRESS="$2"; shift 2 ;;
        --num-cpus) CPUS="$2"; shift 2 ;;
        --num-gpus) GPUS="$2"; shift 2 ;;
        --ports) BASE="$2"; shift 2 ;;
        --grace) GRACE="$2"; shift 2 ;;
        --dashboard) DASHBOARD=true; shift ;;
        --) shift; EXTRA=("$@"); break ;;
        -h|--help) usage ;;
        *) tp_die "unknown option $1 (see --help)" ;;
    esac
done

CUSTOM_DIR=1
if [ -z "$DIR" ]; then
    CUSTOM_DIR=0
    case "$ACTION" in
        worker) DIR=/tmp/tuneprune-ray-worker ;;
        *) DIR=/tmp/tuneprune-ray-head ;;
    esac
fi
PIDFILE="$DIR/ray.pid"
LOG="$DIR/ray.log"

start_node() {
    local kind="$1"
    if tp_alive "$PIDFILE"; then tp_die "a Ray node is already running from $DIR (pid $(cat "$PIDFILE")); stop it first"; fi
    mkdir -p "$DIR"
    DIR="$(cd "$DIR" && pwd)"
    PIDFILE="$DIR/ray.pid"
    LOG="$DIR/ray.log"
    [ "${#DIR}" -le 40 ] || tp_log "warning: --dir $DIR is long; Ray's socket paths below it may exceed 107 bytes"
    : >"$LOG"
    local args=(start --block --node-ip-address "$IP" --disable-usage-stats)
    if [ "$kind" = head ]; then
        args+=(--head --port "$PORT" --include-dashboard "$DASHBOARD")
    else
        [ -n "$ADDRESS" ] || tp_die "worker needs --address HEAD_IP:PORT"
        args+=(--address "$ADDRESS")
    fi
    [ -n "$CPUS" ] && args+=(--num-cpus "$CPUS")
    [ -n "$GPUS" ] && args+=(--num-gpus "$GPUS")
    [ "$CUSTOM_DIR" = 1 ] && args+=(--temp-dir "$DIR/tmp")
    if [ -n "$BASE" ]; then
        args+=(--node-manager-port "$BASE" --object-manager-port $((BASE + 1))
            --dashboard-agent-listen-port $((BASE + 2)) --dashboard-agent-grpc-port $((BASE + 3))
            --runtime-env-agent-port $((BASE + 4)) --metrics-export-port $((BASE + 5))
            --min-worker-port $((BASE + 10)) --max-worker-port $((BASE + 99)))
        [ "$kind" = head ] && args+=(--dashboard-port $((BASE + 7)))
    fi
    args+=("${EXTRA[@]}")
    tp_log "ray ${args[*]}"
    tp_start_group "$PIDFILE" "$LOG" "$TP_BIN/ray" "${args[@]}"
    # `ray start --block` prints "Ray runtime started" once the node is up.
    local i
    for i in $(seq 1 600); do
        if grep -q "Ray runtime started" "$LOG" 2>/dev/null; then
            echo "$kind node up (pid $(cat "$PIDFILE"), log $LOG)"
            if [ "$CUSTOM_DIR" = 1 ]; then  # the node's id, as trials tag their runs (ray.node_id)
                # Ray writes the file naming it shortly after "Ray runtime started": wait up to 30 s.
                local f="" _
                for _ in $(seq 1 150); do
                    f="$(ls "$DIR"/tmp/session_latest/runtime_env_agent_port_* 2>/dev/null | head -n 1 || true)"
                    [ -n "$f" ] && break
                    sleep 0.2
                done
                if [ -n "$f" ]; then
                    echo "${f##*_}" >"$DIR/node_id"
                    echo "node id $(cat "$DIR/node_id")"
                else
                    tp_log "the node's id is not known yet (no $DIR/node_id)"
                fi
            fi
            if [ "$kind" = head ]; then
                echo "join a worker:   $(basename "$0") worker --address $IP:$PORT"
                echo "run a search:    tuneprune search SPACE.yaml --address $IP:$PORT"
                [ "$CUSTOM_DIR" = 1 ] && echo "for --address auto: export RAY_ADDRESS=$IP:$PORT"
            fi
            return 0
        fi
        if ! tp_alive "$PIDFILE"; then
            tail -n 30 "$LOG" >&2
            rm -f "$PIDFILE"
            tp_die "ray start exited; see $LOG"
        fi
        sleep 0.2
    done
    tail -n 30 "$LOG" >&2
    tp_stop_group "$PIDFILE" 5
    tp_die "Ray node did not come up within 120 s; see $LOG"
}

case "$ACTION" in
    head) start_node head ;;
    worker) start_node worker ;;
    stop) tp_stop_group "$PIDFILE" "$GRACE" ;;
    status)
        if tp_alive "$PIDFILE"; then echo "running (pid $(cat "$PIDFILE"), log $LOG)"; else echo "not running"; exit 1; fi
        ;;
    *) usage ;;
esac
