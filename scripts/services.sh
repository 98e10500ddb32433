#!/usr/bin/env bash
# Throwaway PostgreSQL 15 + Redis + an SMTP sink for the integration tests.
#
#   scripts/services.sh start   install if needed, start (idempotent), write <state>/env
#   scripts/services.sh env     print <state>/env (source it to get KEEL_TEST_* variables)
#   scripts/services.sh stop    stop both, remove the state directory (never fails)
#   scripts/services.sh pg-stop [fast|immediate]   stop PostgreSQL only, keeping its data
#                               (the fault tests: `immediate` is a crash, no checkpoint)
#   scripts/services.sh pg-start                   start it again after pg-stop
#
# All listen on 127.0.0.1 only, on private ports:
#   KEEL_PG_PORT     (default 55432)  role keel / password keel / database keel, trust auth
#   KEEL_REDIS_PORT  (default 56379)
#   KEEL_SMTP_PORT   (default 52525)  scripts/smtp-sink.py: accepts every mail and writes it
#                    to <state>/mail (KEEL_TEST_SMTP_URL, KEEL_TEST_MAIL_DIR in the env file)
#   KEEL_SERVICES_DIR (default <repo>/.ci/tmp/services) holds all state, logs and the env file.
#   KEEL_PG_BIN      (default /usr/lib/postgresql/15/bin)
# PostgreSQL is tuned for tests (fsync, synchronous_commit, full_page_writes off): never keep
# data in it. KEEL_PG_DURABLE=1 keeps synchronous_commit on (a commit is acknowledged once
# its WAL is written), so a crash of PostgreSQL alone loses no acknowledged write.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
STATE="${KEEL_SERVICES_DIR:-$REPO/.ci/tmp/services}"
PG_BIN="${KEEL_PG_BIN:-/usr/lib/postgresql/15/bin}"
WAIT_SECS="${KEEL_SERVICES_WAIT_SECS:-30}"
META="$STATE/meta"
ENV_FILE="$STATE/env"

log() { printf 'services.sh: %s\n' "$*" >&2; }
die() {
    log "error: $*"
    exit 1
}

is_root() { [[ "$(id -u)" == 0 ]]; }

# Run a command with root rights (directly, or through sudo when available).
priv() {
    if is_root; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo "$@"
    else
        die "need root to run '$*' (not root and no sudo); install redis-server and postgresql-15 yourself"
    fi
}

# PostgreSQL refuses to run as root: as root, run its tools as the postgres user.
as_pg() {
    if ! is_root; then
        "$@"
    elif command -v runuser >/dev/null 2>&1; then
        runuser -u postgres -- "$@"
    else
        su postgres -s /bin/bash -c "$(printf '%q ' "$@")"
    fi
}

# Alive = exists and is not a zombie (an exited daemon may linger unreaped under some inits).
pid_alive() {
    local pid="${1:-}" stat=""
    [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null || return 1
    if [[ -r "/proc/$pid/stat" ]]; then
        stat="$(sed 's/^.*) //' "/proc/$pid/stat" 2>/dev/null | cut -d' ' -f1)"
    fi
    [[ "$stat" != Z ]]
}

read_pid() { if [[ -f "$1" ]]; then head -n 1 "$1" | tr -dc '0-9'; fi; }

# ---------------------------------------------------------------------------------------------
# Installation
# ---------------------------------------------------------------------------------------------

APT_UPDATED=0
POLICY_CREATED=0

cleanup_policy() {
    if [[ "$POLICY_CREATED" == 1 ]]; then
        priv rm -f /usr/sbin/policy-rc.d || true
        POLICY_CREATED=0
    fi
}

apt_install() {
    command -v apt-get >/dev/null 2>&1 || die "apt-get not found; install $* yourself"
    if ! is_root && ! command -v sudo >/dev/null 2>&1; then
        die "$* missing and cannot be installed (not root, no sudo); install $* yourself"
    fi
    # Keep the packages' own system services (redis on 6379, the 'main' cluster on 5432) from
    # starting during installation: we run private instances instead.
    if [[ ! -e /usr/sbin/policy-rc.d ]]; then
        printf '#!/bin/sh\nexit 101\n' | priv tee /usr/sbin/policy-rc.d >/dev/null
        priv chmod 755 /usr/sbin/policy-rc.d
        POLICY_CREATED=1
        trap cleanup_policy EXIT
    fi
    if [[ "$APT_UPDATED" == 0 ]]; then
        log "apt-get update"
        priv env DEBIAN_FRONTEND=noninteractive apt-get update -qq </dev/null
        APT_UPDATED=1
    fi
    log "apt-get install -y $*"
    priv env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" </dev/null >&2
    cleanup_policy
}

ensure_installed() {
    if ! command -v redis-server >/dev/null 2>&1 || ! command -v redis-cli >/dev/null 2>&1; then
        apt_install redis-server
    fi
    if [[ ! -x "$PG_BIN/initdb" ]]; then
        apt_install postgresql-15
    fi
    command -v redis-server >/dev/null 2>&1 || die "redis-server still not on PATH after installation"
    [[ -x "$PG_BIN/initdb" ]] || die "$PG_BIN/initdb still missing after installation"
    if is_root && ! id postgres >/dev/null 2>&1; then
        log "creating system user postgres"
        useradd --system --user-group --no-create-home --shell /usr/sbin/nologin postgres
    fi
}

# ---------------------------------------------------------------------------------------------
# State
# ---------------------------------------------------------------------------------------------

PG_PORT="${KEEL_PG_PORT:-55432}"
REDIS_PORT="${KEEL_REDIS_PORT:-56379}"
SMTP_PORT="${KEEL_SMTP_PORT:-52525}"
PG_DIR=""

load_meta() {
    if [[ -f "$META" ]]; then
        # shellcheck disable=SC1090
        source "$META"
    fi
}

write_meta() {
    {
        printf 'PG_PORT=%q\n' "$PG_PORT"
        printf 'REDIS_PORT=%q\n' "$REDIS_PORT"
        printf 'PG_DIR=%q\n' "$PG_DIR"
    } >"$META"
}

pg_pid() { if [[ -n "$PG_DIR" ]]; then read_pid "$PG_DIR/data/postmaster.pid"; fi; }
redis_pid() { read_pid "$STATE/redis/redis.pid"; }

# The PostgreSQL directory must be reachable by the postgres user and its socket path short
# enough for a unix socket (107 bytes); otherwise use a private directory under /tmp.
choose_pg_dir() {
    local candidate="$STATE/pg"
    local sock="$candidate/socket/.s.PGSQL.$PG_PORT"
    if is_root && ! as_pg test -x "$STATE" 2>/dev/null; then
        log "$STATE is not traversable by the postgres user; using a directory under /tmp"
        candidate=""
    elif ((${#sock} > 100)); then
        log "socket path $sock is too long; using a directory under /tmp"
        candidate=""
    fi
    if [[ -z "$candidate" ]]; then
        candidate="$(mktemp -d /tmp/keel-pg.XXXXXX)"
        chmod 755 "$candidate"
    fi
    PG_DIR="$candidate"
}

# ---------------------------------------------------------------------------------------------
# PostgreSQL
# ---------------------------------------------------------------------------------------------

pg_log_tail() {
    log "last lines of $PG_DIR/postgres.log:"
    tail -n 40 "$PG_DIR/postgres.log" >&2 2>/dev/null || true
}

pg_ready() { "$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$PG_PORT" -d postgres -U postgres -t 2 >/dev/null 2>&1; }

start_pg() {
    if pid_alive "$(pg_pid)"; then
        log "PostgreSQL already running (pid $(pg_pid), port $PG_PORT)"
    else
        mkdir -p "$PG_DIR/socket"
        if [[ ! -f "$PG_DIR/data/PG_VERSION" ]]; then
            rm -rf "$PG_DIR/data"
            mkdir -p "$PG_DIR/data"
            if is_root; then chown -R postgres:postgres "$PG_DIR"; fi
            chmod 700 "$PG_DIR/data"
            log "initdb $PG_DIR/data"
            (cd "$PG_DIR" && as_pg "$PG_BIN/initdb" -D "$PG_DIR/data" -U postgres --auth=trust \
                -E UTF8 --no-locale --no-sync >"$PG_DIR/initdb.log" 2>&1) || {
                tail -n 40 "$PG_DIR/initdb.log" >&2 || true
                die "initdb failed"
            }
            cat >>"$PG_DIR/data/postgresql.conf" <<EOF

# --- keel test instance (scripts/services.sh) ---
listen_addresses = '127.0.0.1'
port = $PG_PORT
unix_socket_directories = '$PG_DIR/socket'
max_connections = 300
fsync = off
synchronous_commit = $([[ "${KEEL_PG_DURABLE:-}" == 1 ]] && echo on || echo off)
full_page_writes = off
EOF
            cat >"$PG_DIR/data/pg_hba.conf" <<'EOF'
# keel test instance: trust on the unix socket and on 127.0.0.1 only
local   all   all                 trust
host    all   all   127.0.0.1/32  trust
EOF
            if is_root; then chown -R postgres:postgres "$PG_DIR"; fi
        fi
        log "starting PostgreSQL on 127.0.0.1:$PG_PORT"
        (cd "$PG_DIR" && as_pg "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -l "$PG_DIR/postgres.log" \
            -w -t "$WAIT_SECS" start >/dev/null) || {
            pg_log_tail
            die "PostgreSQL did not start"
        }
    fi
    local waited=0
    until pg_ready; do
        if ((waited >= WAIT_SECS)); then
            pg_log_tail
            die "PostgreSQL not ready on 127.0.0.1:$PG_PORT after ${WAIT_SECS}s"
        fi
        sleep 1
        waited=$((waited + 1))
    done
    "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PG_PORT" -U postgres -d postgres >/dev/null <<'SQL' || {
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'keel') THEN
        CREATE ROLE keel LOGIN SUPERUSER PASSWORD 'keel';
    END IF;
END
$$;
SELECT 'CREATE DATABASE keel OWNER keel' WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = 'keel')
\gexec
SQL
        pg_log_tail
        die "could not create role/database keel"
    }
}

stop_pg() {
    [[ -n "$PG_DIR" && -d "$PG_DIR/data" ]] || return 0
    local pid mode="${1:-fast}"
    pid="$(pg_pid)"
    pid_alive "$pid" || return 0
    log "stopping PostgreSQL (pid $pid, -m $mode)"
    (cd "$PG_DIR" && as_pg "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -m "$mode" -w -t "$WAIT_SECS" stop >/dev/null 2>&1) ||
        kill -TERM "$pid" 2>/dev/null || true
    wait_gone "$pid" || kill -KILL "$pid" 2>/dev/null || true
}

# ---------------------------------------------------------------------------------------------
# Redis
# ---------------------------------------------------------------------------------------------

redis_ready() { [[ "$(redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping 2>/dev/null)" == "PONG" ]]; }

redis_log_tail() {
    log "last lines of $STATE/redis/redis.log:"
    tail -n 40 "$STATE/redis/redis.log" >&2 2>/dev/null || true
}

start_redis() {
    if pid_alive "$(redis_pid)"; then
        log "Redis already running (pid $(redis_pid), port $REDIS_PORT)"
    else
        mkdir -p "$STATE/redis"
        log "starting Redis on 127.0.0.1:$REDIS_PORT"
        redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no \
            --daemonize yes --pidfile "$STATE/redis/redis.pid" \
            --logfile "$STATE/redis/redis.log" --dir "$STATE/redis" || {
            redis_log_tail
            die "Redis did not start"
        }
    fi
    local waited=0
    until redis_ready; do
        if ((waited >= WAIT_SECS)); then
            redis_log_tail
            die "Redis not ready on 127.0.0.1:$REDIS_PORT after ${WAIT_SECS}s"
        fi
        sleep 1
        waited=$((waited + 1))
    done
}

stop_redis() {
    local pid
    pid="$(redis_pid)"
    pid_alive "$pid" || return 0
    log "stopping Redis (pid $pid)"
    redis-cli -h 127.0.0.1 -p "$REDIS_PORT" shutdown nosave >/dev/null 2>&1 ||
        kill -TERM "$pid" 2>/dev/null || true
    wait_gone "$pid" || kill -KILL "$pid" 2>/dev/null || true
}

wait_gone() {
    local pid="$1" i
    for ((i = 0; i < WAIT_SECS * 10; i++)); do
        pid_alive "$pid" || return 0
        sleep 0.1
    done
    return 1
}

# ---------------------------------------------------------------------------------------------
# SMTP sink
# ---------------------------------------------------------------------------------------------

smtp_pid() { read_pid "$STATE/smtp/smtp.pid"; }

smtp_ready() { (exec 3<>"/dev/tcp/127.0.0.1/$SMTP_PORT") 2>/dev/null; }

start_smtp() {
    if pid_alive "$(smtp_pid)"; then
        log "SMTP sink already running (pid $(smtp_pid), port $SMTP_PORT)"
        return 0
    fi
    command -v python3 >/dev/null 2>&1 || die "python3 not found (the SMTP sink needs it)"
    mkdir -p "$STATE/smtp" "$STATE/mail"
    log "starting the SMTP sink on 127.0.0.1:$SMTP_PORT (mail in $STATE/mail)"
    setsid python3 "$REPO/scripts/smtp-sink.py" --dir "$STATE/mail" --port "$SMTP_PORT" \
        >"$STATE/smtp/smtp.log" 2>&1 </dev/null &
    echo $! >"$STATE/smtp/smtp.pid"
    local waited=0
    until smtp_ready; do
        if ((waited >= WAIT_SECS * 10)); then
            tail -n 40 "$STATE/smtp/smtp.log" >&2 2>/dev/null || true
            die "SMTP sink not listening on 127.0.0.1:$SMTP_PORT after ${WAIT_SECS}s"
        fi
        sleep 0.1
        waited=$((waited + 1))
    done
}

stop_smtp() {
    local pid
    pid="$(smtp_pid)"
    pid_alive "$pid" || return 0
    log "stopping the SMTP sink (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    wait_gone "$pid" || kill -KILL "$pid" 2>/dev/null || true
}

# ---------------------------------------------------------------------------------------------
# Commands
# ---------------------------------------------------------------------------------------------

cmd_start() {
    ensure_installed
    mkdir -p "$STATE"
    chmod 755 "$STATE"
    local want_pg="$PG_PORT" want_redis="$REDIS_PORT"
    load_meta
    if [[ "$PG_PORT" != "$want_pg" || "$REDIS_PORT" != "$want_redis" ]]; then
        if pid_alive "$(pg_pid)" || pid_alive "$(redis_pid)"; then
            if [[ -n "${KEEL_PG_PORT:-}${KEEL_REDIS_PORT:-}" ]]; then
                log "warning: already running on ports $PG_PORT/$REDIS_PORT; run 'stop' first to change ports"
            fi
        else
            PG_PORT="$want_pg"
            REDIS_PORT="$want_redis"
        fi
    fi
    if [[ -z "$PG_DIR" || ! -d "$PG_DIR" ]]; then
        choose_pg_dir
    fi
    write_meta
    start_pg
    start_redis
    start_smtp
    {
        echo "# written by scripts/services.sh start"
        echo "export KEEL_TEST_DATABASE_URL=postgres://keel:keel@127.0.0.1:$PG_PORT/keel"
        echo "export KEEL_TEST_REDIS_URL=redis://127.0.0.1:$REDIS_PORT"
        echo "export KEEL_TEST_SMTP_URL='smtp://127.0.0.1:$SMTP_PORT?starttls=false'"
        echo "export KEEL_TEST_MAIL_DIR=$STATE/mail"
    } >"$ENV_FILE"
    log "ready: PostgreSQL 127.0.0.1:$PG_PORT, Redis 127.0.0.1:$REDIS_PORT, SMTP sink 127.0.0.1:$SMTP_PORT (env: $ENV_FILE)"
}

cmd_env() {
    [[ -f "$ENV_FILE" ]] || die "$ENV_FILE not found; run 'scripts/services.sh start' first"
    cat "$ENV_FILE"
}

cmd_stop() {
    set +e
    load_meta
    if [[ -z "$PG_DIR" ]]; then PG_DIR="$STATE/pg"; fi
    stop_pg
    stop_redis
    stop_smtp
    if [[ "$PG_DIR" != "$STATE/pg" && "$PG_DIR" == /tmp/keel-pg.* ]]; then
        rm -rf "$PG_DIR"
    fi
    rm -rf "$STATE"
    log "stopped"
    return 0
}

cmd_pg_stop() {
    local mode="${1:-fast}"
    [[ "$mode" == fast || "$mode" == immediate ]] || die "pg-stop: mode is fast or immediate, not '$mode'"
    load_meta
    [[ -n "$PG_DIR" ]] || die "no PostgreSQL started from $STATE"
    stop_pg "$mode"
}

cmd_pg_start() {
    load_meta
    [[ -n "$PG_DIR" ]] || die "no PostgreSQL started from $STATE"
    start_pg
}

case "${1:-}" in
start) cmd_start ;;
stop) cmd_stop ;;
env) cmd_env ;;
pg-stop) cmd_pg_stop "${2:-fast}" ;;
pg-start) cmd_pg_start ;;
*)
    echo "usage: $0 start|stop|env|pg-stop [fast|immediate]|pg-start" >&2
    exit 2
    ;;
esac
