#!/usr/bin/env bash
# A throw-away local PostgreSQL cluster for tuneprune's MLflow server and Optuna studies.
#
#   postgres.sh start  --dir DIR [--port 5432] [--host 127.0.0.1] [--db mlflow --db optuna]
#                      [--user tuneprune] [--allow CIDR]... [--fast]
#   postgres.sh stop   --dir DIR
#   postgres.sh status --dir DIR
#   postgres.sh url    --dir DIR [--db NAME]      postgresql://USER@HOST:PORT/NAME (no password)
#   postgres.sh env    --dir DIR                  export PGPASSFILE=... (eval "$(postgres.sh env ...)")
#   postgres.sh createdb --dir DIR NAME
#
# `start` runs initdb on first use (DIR/data), then starts the server listening on --host
# only (127.0.0.1 unless given) with password (scram-sha-256) authentication for TCP
# clients, and creates the databases (default: mlflow and optuna) owned by --user.
# The generated password is in DIR/pgpass, a libpq password file (mode 600): point
# PGPASSFILE at it (`eval "$(postgres.sh env --dir DIR)"`) and use URLs without a
# password, so none ends up in process lists, logs or MLflow params.
# TCP logins are accepted from loopback only; --allow CIDR (with --host set to an address
# of this machine on that network) adds a password-authenticated pg_hba.conf rule for it.
# --fast turns off fsync / synchronous commit: for tests only, a crash can lose data.
#
# PostgreSQL refuses to run as root: as root the server runs as the `postgres` system user
# ($PG_OS_USER) via runuser, and DIR must be reachable by that user (not below a 0700
# directory such as pytest's tmp dirs). Binaries: $PG_BIN, else the newest
# /usr/lib/postgresql/*/bin (Debian: apt-get install postgresql), else initdb on PATH.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/cluster/lib.sh"

usage() { sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
[ $# -ge 1 ] || usage
ACTION="$1"
shift
DIR="" PORT=5432 HOST=127.0.0.1 DBUSER=tuneprune FAST=0 DBS=() ARGS=() ALLOW=()
while [ $# -gt 0 ]; do
    case "$1" in
        --dir) DIR="$2"; shift 2 ;;
        --port) PORT="$2"; shift 2 ;;
        --host) HOST="$2"; shift 2 ;;
        --db) DBS+=("$2"); shift 2 ;;
        --user) DBUSER="$2"; shift 2 ;;
        --fast) FAST=1; shift ;;
        --allow) ALLOW+=("$2"); shift 2 ;;
        -h|--help) usage ;;
        -*) tp_die "unknown option $1 (see --help)" ;;
        *) ARGS+=("$1"); shift ;;
    esac
done
[ -n "$DIR" ] || tp_die "--dir DIR is required"
mkdir -p "$DIR"
DIR="$(cd "$DIR" && pwd)"
DATA="$DIR/data"
RUN="$DIR/run"       # Unix socket, server log
CONF="$DIR/cluster.env"  # port, host, user of the running cluster, for url/env/stop

find_bin() {
    if [ -n "${PG_BIN:-}" ]; then echo "$PG_BIN"; return; fi
    local d
    d="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)"
    if [ -n "$d" ] && [ -x "$d/initdb" ]; then echo "$d"; return; fi
    if command -v initdb >/dev/null 2>&1; then dirname "$(command -v initdb)"; return; fi
    tp_die "no PostgreSQL server binaries (initdb, pg_ctl): apt-get install postgresql, or set PG_BIN"
}

# as_pg CMD...: run CMD as the user that owns the cluster.
OS_USER="$(id -un)"
if [ "$(id -u)" = 0 ]; then OS_USER="${PG_OS_USER:-postgres}"; fi
as_pg() {
    if [ "$(id -u)" = 0 ]; then runuser -u "$OS_USER" -- "$@"; else "$@"; fi
}

load_conf() {
    [ -f "$CONF" ] || tp_die "no cluster in $DIR (run: $(basename "$0") start --dir $DIR)"
    # shellcheck disable=SC1090
    source "$CONF"
}

psql_admin() {
    as_pg "$BIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$RUN" -p "$PORT" -U "$DBUSER" -d postgres "$@"
}

create_db() {
    local name="$1"
    [[ "$name" =~ ^[A-Za-z_][A-Za-z0-9_]*$ ]] || tp_die "database name $name: letters, digits and _ only"
    if [ -z "$(psql_admin -tA -c "SELECT 1 FROM pg_database WHERE datname = '$name'")" ]; then
        psql_admin -c "CREATE DATABASE \"$name\" OWNER \"$DBUSER\""
        tp_log "created database $name"
    fi
}

start() {
    BIN="$(find_bin)"
    if [ "$(id -u)" = 0 ]; then
        id "$OS_USER" >/dev/null 2>&1 || tp_die "user $OS_USER does not exist (set PG_OS_USER to an unprivileged user)"
        chmod o+x "$DIR"  # the server's user only traverses DIR; data/ and run/ are its own
        runuser -u "$OS_USER" -- test -x "$DIR" || tp_die "$DIR is not reachable by user $OS_USER (a parent directory is private); choose another --dir"
    fi
    if [ -f "$CONF" ] && as_pg "$BIN/pg_ctl" -D "$DATA" status >/dev/null 2>&1; then
        tp_log "already running"
        load_conf
    else
        if [ ! -f "$DATA/PG_VERSION" ]; then
            mkdir -p "$DATA" "$RUN"
            [ "$(id -u)" = 0 ] && chown "$OS_USER" "$DATA" "$RUN"
            # run/ holds the Unix socket, where logins are trusted: private to the server's user.
            chmod 700 "$DATA" "$RUN"
            local pw
            pw="$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')"
            umask 077
            printf '%s\n' "$pw" >"$DIR/password.tmp"
            [ "$(id -u)" = 0 ] && chown "$OS_USER" "$DIR/password.tmp"
            as_pg "$BIN/initdb" -D "$DATA" -U "$DBUSER" --pwfile="$DIR/password.tmp" \
                --auth-local=trust --auth-host=scram-sha-256 -E UTF8 --locale=C.UTF-8 >"$DIR/initdb.log" 2>&1 \
                || { cat "$DIR/initdb.log" >&2; tp_die "initdb failed"; }
            # *:*:*:USER:PASSWORD - for any host/port/database, see libpq's PGPASSFILE.
            printf '*:*:*:%s:%s\n' "$DBUSER" "$pw" >"$DIR/pgpass"
            chmod 600 "$DIR/pgpass"
            rm -f "$DIR/password.tmp"
            umask 022
        fi
        local cidr
        for cidr in ${ALLOW[@]+"${ALLOW[@]}"}; do
            grep -q "^host all $DBUSER $cidr " "$DATA/pg_hba.conf" \
                || echo "host all $DBUSER $cidr scram-sha-256" | as_pg tee -a "$DATA/pg_hba.conf" >/dev/null
        done
        local opts="-c listen_addresses=$HOST -p $PORT -c unix_socket_directories=$RUN -c unix_socket_permissions=0700 -c max_connections=200"
        [ "$FAST" = 1 ] && opts="$opts -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        as_pg "$BIN/pg_ctl" -D "$DATA" -l "$RUN/postgres.log" -o "$opts" -w -t 60 start >/dev/null \
            || { tail -n 20 "$RUN/postgres.log" >&2; tp_die "PostgreSQL did not start; see $RUN/postgres.log"; }
        printf 'PORT=%q\nHOST=%q\nDBUSER=%q\nBIN=%q\nOS_USER=%q\n' "$PORT" "$HOST" "$DBUSER" "$BIN" "$OS_USER" >"$CONF"
    fi
    [ ${#DBS[@]} -gt 0 ] || DBS=(mlflow optuna)
    local db
    for db in "${DBS[@]}"; do create_db "$db"; done
    echo "PostgreSQL up on $HOST:$PORT (data $DATA, log $RUN/postgres.log)"
    echo "export PGPASSFILE=$DIR/pgpass"
    for db in "${DBS[@]}"; do echo "postgresql://$DBUSER@$HOST:$PORT/$db"; done
}

case "$ACTION" in
    start) start ;;
    stop)
        if [ ! -f "$CONF" ]; then tp_log "not running (no cluster in $DIR)"; exit 0; fi
        load_conf
        as_pg "$BIN/pg_ctl" -D "$DATA" -m fast -w -t 60 stop >/dev/null 2>&1 || tp_log "not running"
        echo "PostgreSQL in $DIR stopped"
        ;;
    status)
        load_conf
        as_pg "$BIN/pg_ctl" -D "$DATA" status >/dev/null 2>&1 && echo "running on $HOST:$PORT" || { echo "not running"; exit 1; }
        ;;
    url)
        load_conf
        [ ${#DBS[@]} -gt 0 ] || DBS=(optuna)
        echo "postgresql://$DBUSER@$HOST:$PORT/${DBS[0]}"
        ;;
    env) load_conf; echo "export PGPASSFILE=$DIR/pgpass" ;;
    createdb)
        load_conf
        [ ${#ARGS[@]} -eq 1 ] || tp_die "createdb needs one database name"
        create_db "${ARGS[0]}"
        ;;
    *) usage ;;
esac
