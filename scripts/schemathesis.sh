#!/usr/bin/env bash
# shellcheck disable=SC2317  # the cleanup functions are called from traps
# Property-based API tests: run Schemathesis against a freshly started release binary.
#
# The binary (KEEL_BIN, default ${CARGO_TARGET_DIR:-target}/release/keel) must already be
# built. It is started on 127.0.0.1:${KEEL_ST_PORT:-58080} with a throwaway SQLite database;
# Schemathesis (pinned below, installed with pip if `st` is missing) reads
# /api/v1/openapi.json and runs every check. The server is always stopped on exit; the script
# exits with st's exit code.
#
# Knobs: KEEL_ST_MAX_EXAMPLES (50), KEEL_ST_SEED (1), KEEL_ST_WORKERS (1),
# KEEL_ST_TIMEOUT (1200 s for the whole st run), KEEL_ST_AUTH (1: register a user and send its
# bearer token with every request; 0: anonymous), KEEL_ST_ARGS (extra st flags, word-split),
# KEEL_ST_FORCE_VENV (1: install into <KEEL_ST_DIR>/venv even if st is on PATH),
# KEEL_ST_DIR (st's working directory, default <repo>/.ci/tmp/schemathesis: JUnit report
# junit.xml and the crash cache, so `cd .ci/tmp/schemathesis && st replay <id>` works).
# A schemathesis.toml at the repo top, if any, is passed with --config-file.
set -euo pipefail

ST_VERSION="4.32.5"

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

# KEEL_BIN is relative to the caller's directory; the default honours CARGO_TARGET_DIR.
BIN="${KEEL_BIN:-${CARGO_TARGET_DIR:-$REPO/target}/release/keel}"
if [[ "$BIN" != /* ]]; then BIN="$PWD/$BIN"; fi
cd "$REPO"
PORT="${KEEL_ST_PORT:-58080}"
BASE="http://127.0.0.1:$PORT"
SCHEMA_URL="$BASE/api/v1/openapi.json"
WAIT_SECS="${KEEL_ST_WAIT_SECS:-30}"
ST_DIR="${KEEL_ST_DIR:-$REPO/.ci/tmp/schemathesis}"

log() { printf 'schemathesis.sh: %s\n' "$*" >&2; }
die() {
    log "error: $*"
    exit 1
}
# shellcheck source=scripts/server-lib.sh
source "$REPO/scripts/server-lib.sh"

[[ -x "$BIN" ]] || die "$BIN is not an executable; build it first (cargo build --release --locked -p keel-api --bin keel)"
command -v curl >/dev/null 2>&1 || die "curl is required"

TMP="$(mktemp -d "${TMPDIR:-/tmp}/keel-st.XXXXXX")"
SERVER_LOG="$TMP/server.log"
SERVER_PID=""
ST_PID=""

server_log_tail() {
    if [[ -s "$SERVER_LOG" ]]; then
        log "last lines of the server log ($SERVER_LOG):"
        tail -n 60 "$SERVER_LOG" >&2 || true
    fi
}

stop_server() {
    stop_pid "$SERVER_PID"
    SERVER_PID=""
}

on_exit() {
    local rc=$?
    trap - EXIT
    if [[ -n "$ST_PID" ]]; then
        kill -TERM "$ST_PID" 2>/dev/null || true
        wait "$ST_PID" 2>/dev/null || true
    fi
    stop_server
    if ((rc != 0)); then
        server_log_tail
    fi
    rm -rf "$TMP"
    exit "$rc"
}
trap on_exit EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

if [[ "$(http_status "$BASE/health")" != 000 ]]; then
    die "something already answers on 127.0.0.1:$PORT; stop it or set KEEL_ST_PORT"
fi

# -- Schemathesis ----------------------------------------------------------------------------
mkdir -p "$ST_DIR"
ST_DIR="$(cd "$ST_DIR" && pwd)"
ST=st
ensure_st() {
    local have=""
    if [[ "${KEEL_ST_FORCE_VENV:-0}" != 1 ]] && command -v st >/dev/null 2>&1; then
        have="$(st --version 2>/dev/null | awk '{print $NF}')" || true
        if [[ "$have" != "$ST_VERSION" ]]; then
            log "warning: using the installed st $have; this script is written for $ST_VERSION"
        fi
        return 0
    fi
    if [[ -x "$ST_DIR/venv/bin/st" ]]; then
        ST="$ST_DIR/venv/bin/st"
        return 0
    fi
    local pip=(pip)
    command -v pip >/dev/null 2>&1 || pip=(python3 -m pip)
    export PIP_DISABLE_PIP_VERSION_CHECK=1
    if [[ "${KEEL_ST_FORCE_VENV:-0}" != 1 ]]; then
        log "installing schemathesis==$ST_VERSION with pip"
        if "${pip[@]}" install --quiet "schemathesis==$ST_VERSION" </dev/null; then
            if command -v pyenv >/dev/null 2>&1; then pyenv rehash || true; fi
            hash -r
            command -v st >/dev/null 2>&1 && return 0
            log "schemathesis installed but 'st' is not on PATH"
        fi
    fi
    # e.g. an externally managed system Python (PEP 668): use a private virtualenv.
    log "installing schemathesis==$ST_VERSION into $ST_DIR/venv"
    python3 -m venv "$ST_DIR/venv" || die "python3 -m venv failed (install python3-venv)"
    "$ST_DIR/venv/bin/pip" install --quiet "schemathesis==$ST_VERSION" </dev/null ||
        die "pip install schemathesis==$ST_VERSION failed"
    ST="$ST_DIR/venv/bin/st"
}
ensure_st

# -- start the server ------------------------------------------------------------------------
# Generous rate limits and cheap password hashing: Schemathesis sends thousands of requests
# from one IP, and the checks are about the contract, not about throttling or hashing cost.
# Started in the temporary directory (no ./.env, no ./data of the checkout), without REDIS_URL.
keel_env=(
    env -u REDIS_URL
    KEEL_BIND="127.0.0.1:$PORT"
    DATABASE_URL="sqlite://$TMP/keel.db?mode=rwc"
    RUST_LOG="${RUST_LOG:-warn}"
    KEEL_JWT_SECRET="schemathesis-run-secret-0123456789abcdef"
    KEEL_RATE_LIMIT_ANON="${KEEL_RATE_LIMIT_ANON:-1000000/1m}"
    KEEL_RATE_LIMIT_USER="${KEEL_RATE_LIMIT_USER:-1000000/1m}"
    KEEL_RATE_LIMIT_LOGIN="${KEEL_RATE_LIMIT_LOGIN:-1000000/1m}"
    KEEL_ARGON2_MEMORY_KIB="${KEEL_ARGON2_MEMORY_KIB:-8192}"
    KEEL_ARGON2_ITERATIONS="${KEEL_ARGON2_ITERATIONS:-1}"
    KEEL_ARGON2_PARALLELISM="${KEEL_ARGON2_PARALLELISM:-1}"
)
ST_EMAIL="schemathesis@example.com"
ST_PASSWORD="Schemathesis-Pass-1"
cd "$TMP"
if [[ "${KEEL_ST_AUTH:-1}" == 1 ]]; then
    # An admin, so the admin routes are exercised beyond their 403s.
    "${keel_env[@]}" KEEL_ADMIN_PASSWORD="$ST_PASSWORD" "$BIN" admin create \
        --email "$ST_EMAIL" --name Schemathesis </dev/null >>"$SERVER_LOG" 2>&1 ||
        die "keel admin create failed"
fi
log "starting $BIN on 127.0.0.1:$PORT (SQLite in $TMP)"
"${keel_env[@]}" "$BIN" serve </dev/null >>"$SERVER_LOG" 2>&1 &
SERVER_PID=$!
cd "$REPO"

wait_healthy "$SERVER_PID" "$BASE/health" "$WAIT_SECS"
log "server is up (GET /health = 200)"

# -- run -------------------------------------------------------------------------------------
# A fresh access token of the admin created above (empty when KEEL_ST_AUTH=0).
access_token() {
    [[ "${KEEL_ST_AUTH:-1}" == 1 ]] || return 0
    curl -s --max-time 30 -H 'Content-Type: application/json' \
        -d "{\"email\":\"$ST_EMAIL\",\"password\":\"$ST_PASSWORD\"}" "$BASE/api/v1/auth/login" |
        python3 -c 'import json,sys; print(json.load(sys.stdin).get("accessToken",""))' 2>/dev/null || true
}

extra_args=()
if [[ -n "${KEEL_ST_ARGS:-}" ]]; then
    read -r -a extra_args <<<"$KEEL_ST_ARGS"
fi

# The repo's schemathesis.toml, plus one entry per operation that takes a `cursor`: a cursor
# is minted by the server for one list and sort, so a schema-valid string that is not one is
# a 400 by contract (docs/api/conventions.md), which no JSON schema can state. Derived from
# the served document, so a new paginated route needs no entry by hand.
config_file="$ST_DIR/schemathesis.toml"
{
    if [[ -f "$REPO/schemathesis.toml" ]]; then cat "$REPO/schemathesis.toml"; fi
    repo_config=/dev/null
    if [[ -f "$REPO/schemathesis.toml" ]]; then repo_config="$REPO/schemathesis.toml"; fi
    curl -s --max-time 30 "$SCHEMA_URL" | python3 "$REPO/scripts/schemathesis_cursor_ops.py" "$repo_config"
} >"$config_file" || die "could not write $config_file from $SCHEMA_URL"
grep -q 'include-operation-id' "$config_file" || die "$config_file names no operation: is $SCHEMA_URL served?"
config_args=(--config-file "$config_file")

# Operations that end the caller's session; run last, on their own, so that the first run
# keeps a live token for every other operation.
SESSION_ENDING='^/api/v1/auth/(logout|logout-all|password)$'

# run_st NAME FILTER-ARGS...: one st run with a fresh token; returns st's exit code.
run_st() {
    local name="$1"
    shift
    local auth_args=() token
    token="$(access_token)"
    if [[ -n "$token" ]]; then
        auth_args=(--header "Authorization: Bearer $token")
    elif [[ "${KEEL_ST_AUTH:-1}" == 1 ]]; then
        log "warning: could not sign in as $ST_EMAIL; testing anonymously"
    fi
    local st_cmd=(
        "$ST" "${config_args[@]}" run "$SCHEMA_URL"
        --origin "$BASE"
        --checks all
        --max-examples "${KEEL_ST_MAX_EXAMPLES:-50}"
        --seed "${KEEL_ST_SEED:-1}"
        --workers "${KEEL_ST_WORKERS:-1}"
        --request-timeout 10
        --generation-database none
        --report junit
        --report-junit-path "$ST_DIR/junit-$name.xml"
        --no-color
        "$@"
        "${auth_args[@]}"
        "${extra_args[@]}"
    )
    # Print the command without the token.
    log "running ($name): ${st_cmd[*]//Bearer */Bearer ***}"
    local rc=0
    # st keeps its caches (.schemathesis/, .hypothesis/) in its working directory: not the
    # repo. In the background + wait, so that SIGINT/SIGTERM reach the traps at once.
    (cd "$ST_DIR" && exec timeout --kill-after=30 "${KEEL_ST_TIMEOUT:-1200}" "${st_cmd[@]}" </dev/null) &
    ST_PID=$!
    wait "$ST_PID" || rc=$?
    ST_PID=""
    if ((rc == 124)); then
        log "st run ($name) exceeded KEEL_ST_TIMEOUT=${KEEL_ST_TIMEOUT:-1200}s"
    fi
    return "$rc"
}

st_rc=0
# GET /api/v1/events upgrades to a WebSocket, which schemathesis does not speak (a plain GET
# is a 400 by design); tests/tests/api/events.rs covers it.
WEBSOCKETS='^/api/v1/events$'
run_st main --exclude-path-regex "$SESSION_ENDING|$WEBSOCKETS" || st_rc=$?
# Each session-ending operation with its own fresh token.
for op in logout logout-all password; do
    run_st "$op" --include-path-regex "^/api/v1/auth/$op\$" || st_rc=$?
done
kill -0 "$SERVER_PID" 2>/dev/null || {
    log "the server died during the run"
    ((st_rc != 0)) || st_rc=1
}
if ((st_rc == 0)); then
    log "schemathesis passed"
else
    log "schemathesis failed (exit $st_rc); JUnit reports: $ST_DIR/junit-*.xml"
fi
exit "$st_rc"
