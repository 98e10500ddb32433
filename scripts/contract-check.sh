#!/usr/bin/env bash
# shellcheck disable=SC2317  # the cleanup function is called from traps
# The contract as a client sees it, against a freshly started release binary:
#
#   1. the served /api/v1/openapi.json is validated against the OpenAPI 3.1 schema by an
#      independent validator (openapi-spec-validator);
#   2. a Python client is generated (openapi-python-client, --fail-on-warning) and
#      scripts/contract/flow.py runs through it;
#   3. a TypeScript client is generated (@hey-api/openapi-ts, see adr/0013), compiled with
#      scripts/contract/flow.ts by `tsc --strict`, and run with node.
#
# Each flow registers, creates a project and a task, fetches the task by identifier (`KEY-1`),
# lists the project's tasks and reads a 401 (no token) as the generated `ErrorBody`. Any
# validation error, generator warning, compile error or failed check fails the script.
#
# The binary (KEEL_BIN, default ${CARGO_TARGET_DIR:-target}/release/keel) must be built. It
# runs on a free loopback port with a throwaway SQLite database. The tools (pinned below and
# in scripts/contract/package-lock.json) are installed on first use into KEEL_CONTRACT_DIR
# (default <repo>/.ci/tmp/contract) and reused while their versions do not change; the
# generated clients go to a temporary directory, removed on exit unless KEEL_CONTRACT_KEEP=1.
# Needs python3 (with venv), node ≥ 20.19 and npm, curl.
set -euo pipefail

VALIDATOR_VERSION="0.9.0"
PY_CLIENT_VERSION="0.29.1"

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BIN="${KEEL_BIN:-${CARGO_TARGET_DIR:-$REPO/target}/release/keel}"
if [[ "$BIN" != /* ]]; then BIN="$PWD/$BIN"; fi
cd "$REPO"
TOOLS="${KEEL_CONTRACT_DIR:-$REPO/.ci/tmp/contract}"
WAIT_SECS="${KEEL_CONTRACT_WAIT_SECS:-30}"

log() { printf 'contract-check.sh: %s\n' "$*" >&2; }
die() {
    log "error: $*"
    exit 1
}
# shellcheck source=scripts/server-lib.sh
source "$REPO/scripts/server-lib.sh"

[[ -x "$BIN" ]] || die "$BIN is not an executable; build it first (cargo build --release --locked -p keel-api --bin keel)"
for tool in curl python3 node npm; do
    command -v "$tool" >/dev/null 2>&1 || die "$tool is required"
done

TMP="$(mktemp -d "${TMPDIR:-/tmp}/keel-contract.XXXXXX")"
SERVER_LOG="$TMP/server.log"
SERVER_PID=""

stop_server() {
    stop_pid "$SERVER_PID"
    SERVER_PID=""
}

on_exit() {
    local rc=$?
    trap - EXIT
    stop_server
    if ((rc != 0)) && [[ -s "$SERVER_LOG" ]]; then
        log "last lines of the server log:"
        tail -n 40 "$SERVER_LOG" >&2 || true
    fi
    if [[ "${KEEL_CONTRACT_KEEP:-0}" == 1 ]]; then
        log "kept $TMP"
    else
        rm -rf "$TMP"
    fi
    exit "$rc"
}
trap on_exit EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# run_generator NAME CMD...: runs a code generator; its output is shown, and any warning or
# error in it fails the step even when the generator exits 0.
run_generator() {
    local name="$1"
    shift
    local out="$TMP/$name.log" rc=0
    "$@" 2>&1 </dev/null | sed 's/\x1b\[[0-9;]*m//g' >"$out" || rc=$?
    sed "s/^/  $name: /" "$out" >&2
    ((rc == 0)) || die "$name exited with $rc"
    if grep -Eiq 'warn|error' "$out"; then
        die "$name reported a warning or an error (above)"
    fi
}

# -- tools -----------------------------------------------------------------------------------
mkdir -p "$TOOLS"
TOOLS="$(cd "$TOOLS" && pwd)"
export PIP_DISABLE_PIP_VERSION_CHECK=1 npm_config_update_notifier=false npm_config_fund=false npm_config_audit=false

PY_STAMP="openapi-spec-validator==$VALIDATOR_VERSION openapi-python-client==$PY_CLIENT_VERSION"
if [[ "$(cat "$TOOLS/venv/.keel-stamp" 2>/dev/null || true)" != "$PY_STAMP" ]]; then
    log "installing $PY_STAMP into $TOOLS/venv"
    rm -rf "$TOOLS/venv"
    python3 -m venv "$TOOLS/venv" || die "python3 -m venv failed (install python3-venv)"
    # shellcheck disable=SC2086  # the stamp is the list of requirements
    "$TOOLS/venv/bin/pip" install --quiet $PY_STAMP </dev/null || die "pip install failed"
    printf '%s' "$PY_STAMP" >"$TOOLS/venv/.keel-stamp"
fi

mkdir -p "$TOOLS/node"
if ! cmp -s scripts/contract/package-lock.json "$TOOLS/node/package-lock.json" ||
    [[ ! -x "$TOOLS/node/node_modules/.bin/openapi-ts" ]]; then
    log "installing the TypeScript generator and compiler (scripts/contract/package-lock.json) into $TOOLS/node"
    cp scripts/contract/package.json scripts/contract/package-lock.json "$TOOLS/node/"
    (cd "$TOOLS/node" && npm ci --no-audit --no-fund --loglevel=error </dev/null) || die "npm ci failed"
fi

# -- start the server ------------------------------------------------------------------------
PORT="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')"
BASE="http://127.0.0.1:$PORT"
log "starting $BIN on 127.0.0.1:$PORT (SQLite in $TMP)"
(
    cd "$TMP"
    exec env -u REDIS_URL \
        KEEL_BIND="127.0.0.1:$PORT" \
        DATABASE_URL="sqlite://$TMP/keel.db?mode=rwc" \
        RUST_LOG="${RUST_LOG:-warn}" \
        KEEL_JWT_SECRET="contract-check-secret-0123456789abcdef" \
        KEEL_ARGON2_MEMORY_KIB=8192 KEEL_ARGON2_ITERATIONS=1 KEEL_ARGON2_PARALLELISM=1 \
        "$BIN" serve </dev/null >>"$SERVER_LOG" 2>&1
) &
SERVER_PID=$!
wait_healthy "$SERVER_PID" "$BASE/health" "$WAIT_SECS"

# -- 1. the document -------------------------------------------------------------------------
DOC="$TMP/openapi.json"
curl -sf --max-time 10 -o "$DOC" "$BASE/api/v1/openapi.json" || die "GET /api/v1/openapi.json failed"
log "validating the served document (openapi-spec-validator $VALIDATOR_VERSION)"
"$TOOLS/venv/bin/openapi-spec-validator" --validation-errors all "$DOC" </dev/null ||
    die "the served OpenAPI document is invalid"

# -- 2. the Python client --------------------------------------------------------------------
log "generating the Python client (openapi-python-client $PY_CLIENT_VERSION)"
mkdir -p "$TMP/python"
# Its post-generation hook (ruff) comes with it in the venv.
run_generator openapi-python-client env PATH="$TOOLS/venv/bin:$PATH" \
    "$TOOLS/venv/bin/openapi-python-client" generate --path "$DOC" --meta none --fail-on-warning \
    --output-path "$TMP/python/keel_client"
log "running scripts/contract/flow.py"
KEEL_URL="$BASE" PYTHONPATH="$TMP/python" "$TOOLS/venv/bin/python" scripts/contract/flow.py </dev/null ||
    die "the Python client's flow failed"

# -- 3. the TypeScript client ----------------------------------------------------------------
log "generating the TypeScript client (@hey-api/openapi-ts)"
mkdir -p "$TMP/typescript"
cp scripts/contract/flow.ts scripts/contract/tsconfig.json "$TMP/typescript/"
run_generator openapi-ts "$TOOLS/node/node_modules/.bin/openapi-ts" \
    --input "$DOC" --output "$TMP/typescript/gen" --client @hey-api/client-fetch --no-log-file
log "compiling scripts/contract/flow.ts with the generated client (tsc --strict)"
"$TOOLS/node/node_modules/.bin/tsc" --project "$TMP/typescript/tsconfig.json" </dev/null ||
    die "the TypeScript client does not compile with the flow"
log "running scripts/contract/flow.ts"
KEEL_URL="$BASE" node "$TMP/typescript/out/flow.js" </dev/null || die "the TypeScript client's flow failed"

kill -0 "$SERVER_PID" 2>/dev/null || die "the server died during the checks"
log "the document is valid and both generated clients pass their flows"
