#!/usr/bin/env bash
# shellcheck disable=SC2317  # the cleanup functions are called from traps
# A real backup-and-restore round trip of Keel's PostgreSQL database (`make backup-test`).
#
# 1. Starts a private PostgreSQL + Redis (scripts/services.sh, own state directory and ports),
#    a webhook receiver (python3), and the keel binary on a fresh database (KEEL_ENV=production,
#    Redis, a fixed JWT secret and webhook encryption key).
# 2. Creates data through the API with curl: two users (register, login), a project, a
#    member, labels, tasks (one updated, one done), a comment, a webhook whose deliveries
#    reach the receiver; waits until every delivery succeeded and the outbox is empty, and
#    records what the API answers and the row count of every table.
# 3. Backs up with scripts/pg-backup.sh while keel runs, creates a second, empty database and
#    restores into it (after checking that a restore into the non-empty source is refused).
# 4. Starts keel on the restored database (KEEL_AUTO_MIGRATE=false, a fresh Redis prefix:
#    nothing of Redis is carried over) and checks: identical per-table row counts and schema,
#    every migration applied, the old access token accepted, login with the same password,
#    every recorded API answer equal, and the restored webhook still signing with its secret.
# 5. Restores again with --clean over the now-changed copy and checks the row counts.
#
# Prints PASS/FAIL per check and exits 1 if any failed. Everything it starts is stopped and
# its temporary directory removed on exit, also on failure or interruption.
#
# Knobs: KEEL_BIN (default ${CARGO_TARGET_DIR:-target}/release/keel; built with
# `cargo build --release --locked -p keel-api --bin keel` if missing), KEEL_BACKUP_PG_PORT
# (55452), KEEL_BACKUP_REDIS_PORT (56399; both replaced by free ports if their bind keeps
# failing), KEEL_BACKUP_KEEP=1 (keep the temporary directory).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# KEEL_BIN is relative to the caller's directory; the default honours CARGO_TARGET_DIR.
BIN="${KEEL_BIN:-${CARGO_TARGET_DIR:-$REPO/target}/release/keel}"
if [[ "$BIN" != /* ]]; then BIN="$PWD/$BIN"; fi
cd "$REPO"

PG_PORT="${KEEL_BACKUP_PG_PORT:-55452}"
REDIS_PORT="${KEEL_BACKUP_REDIS_PORT:-56399}"
WAIT_SECS=60
PG_BIN_DIR="${KEEL_PG_BIN:-/usr/lib/postgresql/15/bin}"

log() { printf 'test-backup.sh: %s\n' "$*" >&2; }
die() {
    log "error: $*"
    exit 1
}

for tool in curl jq python3; do
    if ! command -v "$tool" >/dev/null 2>&1 && [[ "$(id -u)" == 0 ]] && command -v apt-get >/dev/null 2>&1; then
        log "installing $tool (apt-get)"
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$tool" </dev/null >/dev/null 2>&1 ||
            { apt-get update -qq >/dev/null 2>&1 &&
                DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$tool" </dev/null >/dev/null 2>&1; } || true
    fi
    command -v "$tool" >/dev/null 2>&1 || die "$tool is required (apt-get install $tool)"
done
if [[ -x "$PG_BIN_DIR/psql" ]]; then PSQL="$PG_BIN_DIR/psql"; else PSQL="$(command -v psql || true)"; fi
if [[ -x "$PG_BIN_DIR/pg_dump" ]]; then PG_DUMP="$PG_BIN_DIR/pg_dump"; else PG_DUMP="$(command -v pg_dump || true)"; fi

TMP="$(mktemp -d "${TMPDIR:-/tmp}/keel-backup-test.XXXXXX")"
# services.sh runs PostgreSQL as the postgres user when we are root: it must traverse TMP.
chmod 755 "$TMP"
export KEEL_SERVICES_DIR="$TMP/services" KEEL_PG_PORT="$PG_PORT" KEEL_REDIS_PORT="$REDIS_PORT"

SERVICES_STARTED=0
PIDS=()
PASSED=0
FAILED=0
FAILURES=()

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    local pid
    for pid in "${PIDS[@]}"; do
        if kill -0 "$pid" 2>/dev/null; then kill -TERM "$pid" 2>/dev/null || true; fi
    done
    for pid in "${PIDS[@]}"; do
        local i
        for ((i = 0; i < 100; i++)); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        if kill -0 "$pid" 2>/dev/null; then kill -KILL "$pid" 2>/dev/null || true; fi
        wait "$pid" 2>/dev/null || true
    done
    if ((SERVICES_STARTED)); then scripts/services.sh stop >/dev/null 2>&1 || true; fi
    if [[ "${KEEL_BACKUP_KEEP:-0}" == 1 ]]; then
        log "kept $TMP"
    else
        rm -rf "$TMP"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

pass() {
    PASSED=$((PASSED + 1))
    printf 'PASS  %s\n' "$*"
}
fail() {
    FAILED=$((FAILED + 1))
    FAILURES+=("$*")
    printf 'FAIL  %s\n' "$*"
}
# check "description" command...: PASS when the command succeeds.
check() {
    local what="$1"
    shift
    if "$@"; then pass "$what"; else fail "$what"; fi
}

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

# ---------------------------------------------------------------------------------------------
# Services, binary, receiver
# ---------------------------------------------------------------------------------------------

# Something listening there already (connections in TIME_WAIT from a previous run are fine).
for port in "$PG_PORT" "$REDIS_PORT"; do
    if python3 -c 'import socket,sys; socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=2).close()' "$port" 2>/dev/null; then
        die "port $port is in use (another run still going, or left behind?); set KEEL_BACKUP_PG_PORT/KEEL_BACKUP_REDIS_PORT"
    fi
done

if [[ ! -x "$BIN" ]]; then
    log "$BIN missing: cargo build --release --locked -p keel-api --bin keel"
    cargo build --release --locked -p keel-api --bin keel
    [[ -x "$BIN" ]] || die "$BIN still missing after the build (is KEEL_BIN or CARGO_TARGET_DIR right?)"
fi

# The ports lie in Linux's ephemeral range (32768-60999): on a busy machine a client
# connection may hold one as its source port for a moment, and the bind fails. Then: try
# again, and after two refusals take ports the kernel reports free.
SERVICES_STARTED=1
for attempt in 1 2 3 4; do
    if scripts/services.sh start 2>"$TMP/services.log"; then break; fi
    if ((attempt == 4)) || ! grep -q 'Address already in use' "$TMP/services.log"; then
        cat "$TMP/services.log" >&2
        die "scripts/services.sh start failed"
    fi
    scripts/services.sh stop >/dev/null 2>&1 || true
    log "port $KEEL_PG_PORT or $KEEL_REDIS_PORT taken by another socket; retrying (attempt $((attempt + 1)) of 4)"
    if ((attempt >= 2)); then
        KEEL_PG_PORT="$(free_port)"
        KEEL_REDIS_PORT="$(free_port)"
        log "now on ports $KEEL_PG_PORT (PostgreSQL) and $KEEL_REDIS_PORT (Redis)"
    fi
    sleep 2
done
eval "$(scripts/services.sh env)"
ADMIN_URL="$KEEL_TEST_DATABASE_URL"
PG_BASE="${ADMIN_URL%/*}"
SOURCE_URL="$PG_BASE/keel_backup_source"
RESTORED_URL="$PG_BASE/keel_backup_restored"
REDIS_URL_SHARED="$KEEL_TEST_REDIS_URL/0"

sql() { "$PSQL" -X -q -At -v ON_ERROR_STOP=1 -d "$1" -c "$2"; }

sql "$ADMIN_URL" 'CREATE DATABASE keel_backup_source' || die "cannot create the source database"

RECEIVER_PORT="$(free_port)"
cat >"$TMP/receiver.py" <<'PY'
# Answers 200 to every POST and appends {path, headers, body} as one JSON line to a file.
import http.server, json, sys

OUT = sys.argv[2]

class Handler(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0"))).decode()
        with open(OUT, "a") as f:
            f.write(json.dumps({"path": self.path, "headers": {k.lower(): v for k, v in self.headers.items()}, "body": body}) + "\n")
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass

http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
PY
: >"$TMP/received.jsonl"
python3 "$TMP/receiver.py" "$RECEIVER_PORT" "$TMP/received.jsonl" 2>"$TMP/receiver.log" &
PIDS+=($!)

JWT_SECRET="$(python3 -c 'import secrets; print(secrets.token_hex(32))')"
WEBHOOK_KEY="$(python3 -c 'import secrets; print(secrets.token_hex(32))')"

# Starts keel on DATABASE_URL $1 with Redis prefix $2, logging to $3; sets KEEL_PID, BASE.
start_keel() {
    local url="$1" prefix="$2" logfile="$3" port
    port="$(free_port)"
    env -i PATH="$PATH" \
        KEEL_ENV=production KEEL_LOG_FORMAT=json \
        KEEL_BIND="127.0.0.1:$port" DATABASE_URL="$url" \
        REDIS_URL="$REDIS_URL_SHARED" KEEL_REDIS_PREFIX="$prefix" \
        KEEL_JWT_SECRET="$JWT_SECRET" KEEL_WEBHOOK_ENCRYPTION_KEY="$WEBHOOK_KEY" \
        KEEL_WEBHOOK_ALLOW_PRIVATE=true KEEL_WEBHOOK_RETRY_BASE_SECS=1 KEEL_MAIL=disabled \
        KEEL_ARGON2_MEMORY_KIB=1024 KEEL_ARGON2_ITERATIONS=1 KEEL_ARGON2_PARALLELISM=1 \
        KEEL_WORKERS=2 KEEL_DB_MAX_CONNECTIONS=5 KEEL_SHUTDOWN_TIMEOUT_SECS=5 \
        "${@:4}" \
        "$BIN" serve >"$logfile" 2>&1 &
    KEEL_PID=$!
    PIDS+=("$KEEL_PID")
    BASE="http://127.0.0.1:$port"
    local i
    for ((i = 0; i < WAIT_SECS * 5; i++)); do
        if curl -fsS -o /dev/null "$BASE/ready" 2>/dev/null; then return 0; fi
        if ! kill -0 "$KEEL_PID" 2>/dev/null; then
            tail -n 40 "$logfile" >&2 || true
            die "keel exited during start-up (log above)"
        fi
        sleep 0.2
    done
    tail -n 40 "$logfile" >&2 || true
    die "keel not ready on $BASE after ${WAIT_SECS}s"
}

# Stops keel (SIGTERM) and returns its exit status.
stop_keel() {
    local pid="$1" rc=0
    kill -TERM "$pid" 2>/dev/null || true
    wait "$pid" || rc=$?
    return "$rc"
}

# api METHOD PATH [TOKEN] [BODY] -> body in $TMP/out.json, status in STATUS.
STATUS=""
api() {
    local method="$1" path="$2" token="${3:-}" body="${4:-}"
    local args=(-sS -o "$TMP/out.json" -w '%{http_code}' -X "$method")
    if [[ -n "$token" ]]; then args+=(-H "Authorization: Bearer $token"); fi
    if [[ -n "$body" ]]; then args+=(-H 'Content-Type: application/json' --data "$body"); fi
    STATUS="$(curl "${args[@]}" "$BASE$path")" || STATUS="curl-failed"
}
# expect STATUS: dies unless the last call answered it (setting up data must not fail).
expect() {
    [[ "$STATUS" == "$1" ]] || die "expected $1, got $STATUS: $(head -c 500 "$TMP/out.json" 2>/dev/null)"
}
field() { jq -er "$1" "$TMP/out.json"; }

# Per-table row counts of a database, one "table count" line each, sorted.
row_counts() {
    local query
    query="$(sql "$1" "SELECT string_agg(format('SELECT %L, count(*) FROM public.%I', table_name, table_name), ' UNION ALL ' ORDER BY table_name)
                       FROM information_schema.tables WHERE table_schema = 'public' AND table_type = 'BASE TABLE'")"
    [[ -n "$query" ]] || return 1
    "$PSQL" -X -q -At -F ' ' -v ON_ERROR_STOP=1 -d "$1" -c "$query" | sort
}

# ---------------------------------------------------------------------------------------------
# Data on the source
# ---------------------------------------------------------------------------------------------

PASSWORD='Backup-drill-passw0rd'
start_keel "$SOURCE_URL" bkpsrc "$TMP/keel-source.log"
SOURCE_PID="$KEEL_PID"
log "keel (source) on $BASE, database keel_backup_source"

api POST /api/v1/auth/register "" "{\"email\":\"owner@example.com\",\"password\":\"$PASSWORD\",\"name\":\"Olive Owner\"}"
expect 201
api POST /api/v1/auth/register "" "{\"email\":\"member@example.com\",\"password\":\"$PASSWORD\",\"name\":\"Max Member\"}"
expect 201
MEMBER_ID="$(field .user.id)"
# The owner is an instance admin (promoted in the database, as `keel admin create` would
# make one): a member is added by e-mail directly only when the caller can already see the
# account (an instance admin sees every account); anyone else would be invited.
sql "$SOURCE_URL" "UPDATE users SET role = 'admin' WHERE email = 'owner@example.com'" >/dev/null
api POST /api/v1/auth/login "" "{\"email\":\"owner@example.com\",\"password\":\"$PASSWORD\"}"
expect 200
TOKEN="$(field .accessToken)"

api POST /api/v1/projects "$TOKEN" '{"key":"BKP","name":"Backup drill","description":"Data that must survive a restore"}'
expect 201
PROJECT="$(field .id)"
api POST "/api/v1/projects/$PROJECT/members" "$TOKEN" '{"email":"member@example.com","role":"member"}'
expect 201
for label in 'bug #d73a4a' 'feature #a2eeef' 'ops #0e8a16'; do
    api POST "/api/v1/projects/$PROJECT/labels" "$TOKEN" "{\"name\":\"${label% *}\",\"color\":\"${label#* }\"}"
    expect 201
done
api POST "/api/v1/projects/$PROJECT/webhooks" "$TOKEN" \
    "{\"url\":\"http://127.0.0.1:$RECEIVER_PORT/hook\",\"events\":[\"task.created\",\"comment.created\"]}"
expect 201
WEBHOOK="$(field .id)"
WEBHOOK_SECRET="$(field .secret)"

TASKS=()
for body in \
    '{"title":"Write the restore runbook","priority":2,"labels":["ops"],"dueDate":"2031-01-15"}' \
    "{\"title\":\"Fix the login race\",\"status\":\"in_progress\",\"priority\":1,\"labels\":[\"bug\"],\"assigneeId\":\"$MEMBER_ID\"}" \
    '{"title":"Dark mode","description":"Everyone asks for it.","status":"backlog","priority":4,"labels":["feature","bug"]}' \
    '{"title":"Ship 1.0","priority":3}'; do
    api POST "/api/v1/projects/$PROJECT/tasks" "$TOKEN" "$body"
    expect 201
    TASKS+=("$(field .id)")
done
api PATCH "/api/v1/tasks/${TASKS[3]}" "$TOKEN" '{"status":"done","description":"Shipped."}'
expect 200
api POST "/api/v1/tasks/${TASKS[0]}/comments" "$TOKEN" '{"body":"Step 1: take the backup while keel runs."}'
expect 201
COMMENT="$(field .id)"
api PATCH "/api/v1/comments/$COMMENT" "$TOKEN" '{"body":"Step 1: take the backup while keel runs (pg-backup.sh)."}'
expect 200

# Quiet point: the 5 deliveries (4 tasks, 1 comment) succeeded and the outbox is empty.
quiet=0
for ((i = 0; i < WAIT_SECS * 5; i++)); do
    api GET "/api/v1/projects/$PROJECT/webhooks/$WEBHOOK/deliveries" "$TOKEN"
    if [[ "$STATUS" == 200 ]] &&
        [[ "$(jq '[.data[] | select(.status == "succeeded")] | length' "$TMP/out.json")" == 5 ]] &&
        [[ "$(sql "$SOURCE_URL" 'SELECT count(*) FROM outbox_events')" == 0 ]]; then
        quiet=1
        break
    fi
    sleep 0.2
done
((quiet)) || die "the webhook deliveries did not all succeed within ${WAIT_SECS}s: $(cat "$TMP/out.json")"
log "data created: 2 users, 1 project, 3 labels, 4 tasks, 1 comment, 1 webhook with 5 deliveries"

# What the API answers, recorded per read: name -> path.
READS=(
    "profile /api/v1/auth/profile"
    "project /api/v1/projects/$PROJECT"
    "projects /api/v1/projects"
    "members /api/v1/projects/$PROJECT/members"
    "labels /api/v1/projects/$PROJECT/labels"
    "tasks /api/v1/projects/$PROJECT/tasks"
    "task-by-identifier /api/v1/tasks/BKP-2"
    "comments /api/v1/tasks/${TASKS[0]}/comments"
    "activity /api/v1/projects/$PROJECT/activity"
    "webhooks /api/v1/projects/$PROJECT/webhooks"
    "webhook /api/v1/projects/$PROJECT/webhooks/$WEBHOOK"
    "deliveries /api/v1/projects/$PROJECT/webhooks/$WEBHOOK/deliveries"
)
for i in "${!TASKS[@]}"; do READS+=("task-$i /api/v1/tasks/${TASKS[$i]}"); done
mkdir -p "$TMP/before" "$TMP/after"
for read in "${READS[@]}"; do
    api GET "${read#* }" "$TOKEN"
    expect 200
    cp "$TMP/out.json" "$TMP/before/${read%% *}.json"
done

row_counts "$SOURCE_URL" >"$TMP/counts-source.txt"

# ---------------------------------------------------------------------------------------------
# Backup (keel running), restore
# ---------------------------------------------------------------------------------------------

BACKUP="$TMP/keel.dump"
start_ns="$(date +%s%N)"
if scripts/pg-backup.sh backup "$SOURCE_URL" "$BACKUP" 2>"$TMP/backup.log"; then
    backup_ms=$((($(date +%s%N) - start_ns) / 1000000))
    backup_bytes="$(wc -c <"$BACKUP" | tr -d ' ')"
    pass "backup while keel runs: $backup_bytes bytes in ${backup_ms} ms"
else
    cat "$TMP/backup.log" >&2
    fail "backup while keel runs"
    die "no backup, nothing to restore"
fi
refuses_overwrite() { ! scripts/pg-backup.sh backup "$SOURCE_URL" "$BACKUP" 2>/dev/null; }
check "backup refuses to overwrite an existing file" refuses_overwrite

row_counts "$SOURCE_URL" >"$TMP/counts-source-after.txt"
check "source row counts unchanged while the backup ran" cmp -s "$TMP/counts-source.txt" "$TMP/counts-source-after.txt"

if stop_keel "$SOURCE_PID"; then pass "source keel stopped cleanly (exit 0)"; else fail "source keel stopped cleanly (exit 0)"; fi

if scripts/pg-backup.sh restore "$BACKUP" "$SOURCE_URL" 2>"$TMP/refused.log"; then
    fail "restore into the non-empty source database is refused"
else
    check "restore into the non-empty source database is refused" grep -q 'is not empty' "$TMP/refused.log"
fi

sql "$ADMIN_URL" 'CREATE DATABASE keel_backup_restored' || die "cannot create the restore target"
start_ns="$(date +%s%N)"
if scripts/pg-backup.sh restore "$BACKUP" "$RESTORED_URL" 2>"$TMP/restore.log"; then
    pass "restore into a new empty database in $((($(date +%s%N) - start_ns) / 1000000)) ms"
else
    cat "$TMP/restore.log" >&2
    fail "restore into a new empty database"
    die "restore failed"
fi

row_counts "$RESTORED_URL" >"$TMP/counts-restored.txt"
if cmp -s "$TMP/counts-source.txt" "$TMP/counts-restored.txt"; then
    pass "per-table row counts identical ($(wc -l <"$TMP/counts-source.txt") tables, $(awk '{ n += $2 } END { print n }' "$TMP/counts-source.txt") rows)"
else
    fail "per-table row counts identical"
    diff "$TMP/counts-source.txt" "$TMP/counts-restored.txt" || true
fi
# Comments and pg_dump's random per-run \restrict key (PostgreSQL >= 15.14) left out.
schema_of() { "$PG_DUMP" --schema-only --no-owner -d "$1" | grep -Ev '^(--|\\(un)?restrict )'; }
schema_of "$SOURCE_URL" >"$TMP/schema-source.sql"
schema_of "$RESTORED_URL" >"$TMP/schema-restored.sql"
if [[ -s "$TMP/schema-source.sql" ]] && cmp -s "$TMP/schema-source.sql" "$TMP/schema-restored.sql"; then
    pass "schema identical (pg_dump --schema-only, $(grep -c '^CREATE' "$TMP/schema-source.sql") CREATE statements)"
else
    fail "schema identical (pg_dump --schema-only)"
    diff "$TMP/schema-source.sql" "$TMP/schema-restored.sql" | head -n 20 || true
fi

migrate_status() {
    env -i PATH="$PATH" DATABASE_URL="$1" KEEL_AUTO_MIGRATE=false KEEL_LOG_FORMAT=json "$BIN" migrate status 2>/dev/null
}
migrate_status "$SOURCE_URL" >"$TMP/migrations-source.txt"
migrate_status "$RESTORED_URL" >"$TMP/migrations-restored.txt"
all_applied() {
    [[ -s "$TMP/migrations-restored.txt" ]] && ! grep -qv '^applied' "$TMP/migrations-restored.txt" &&
        cmp -s "$TMP/migrations-restored.txt" "$TMP/migrations-source.txt"
}
check "every migration applied on the restored database ($(wc -l <"$TMP/migrations-restored.txt") migrations)" all_applied

# ---------------------------------------------------------------------------------------------
# keel on the restored database
# ---------------------------------------------------------------------------------------------

OLD_TOKEN="$TOKEN"
start_keel "$RESTORED_URL" bkprestored "$TMP/keel-restored.log" KEEL_AUTO_MIGRATE=false
RESTORED_PID="$KEEL_PID"
log "keel (restored) on $BASE, database keel_backup_restored, empty Redis prefix"
pass "keel starts on the restored database without migrating"

api GET /api/v1/auth/profile "$OLD_TOKEN"
check "an access token issued before the backup is accepted" [ "$STATUS" == 200 ]

api POST /api/v1/auth/login "" "{\"email\":\"owner@example.com\",\"password\":\"$PASSWORD\"}"
if [[ "$STATUS" == 200 ]]; then
    pass "the owner logs in with the same password"
    TOKEN="$(field .accessToken)"
else
    fail "the owner logs in with the same password (got $STATUS)"
fi
api POST /api/v1/auth/login "" "{\"email\":\"owner@example.com\",\"password\":\"Wrong-passw0rd\"}"
check "a wrong password is still refused" [ "$STATUS" == 401 ]

same_json() { python3 -c 'import json,sys; sys.exit(0 if json.load(open(sys.argv[1])) == json.load(open(sys.argv[2])) else 1)' "$1" "$2"; }
for read in "${READS[@]}"; do
    name="${read%% *}"
    api GET "${read#* }" "$TOKEN"
    cp "$TMP/out.json" "$TMP/after/$name.json"
    if [[ "$STATUS" == 200 ]] && same_json "$TMP/before/$name.json" "$TMP/after/$name.json"; then
        pass "GET ${read#* } equal ($name)"
    else
        fail "GET ${read#* } equal ($name): status $STATUS"
        diff <(jq -S . "$TMP/before/$name.json") <(jq -S . "$TMP/after/$name.json") | head -n 20 || true
    fi
done
restored_shape() {
    local a="$TMP/after"
    [[ "$(jq '.data | length' "$a/tasks.json") $(jq '.data | length' "$a/labels.json") $(jq '.data | length' "$a/members.json") $(jq '.data | length' "$a/comments.json") $(jq -r .status "$a/task-3.json")" == "4 3 2 1 done" ]]
}
check "the restored data is what was created (4 tasks, 3 labels, 2 members, 1 comment, a task done)" restored_shape

# The restored webhook still signs with the secret shown at creation: its sealed secret came
# back with the database and opens with the same KEEL_WEBHOOK_ENCRYPTION_KEY.
delivered_before="$(wc -l <"$TMP/received.jsonl")"
api POST "/api/v1/projects/$PROJECT/tasks" "$TOKEN" '{"title":"Created after the restore"}'
expect 201
NEW_TASK="$(field .id)"
got=0
for ((i = 0; i < WAIT_SECS * 5; i++)); do
    if (($(wc -l <"$TMP/received.jsonl") > delivered_before)) && grep -q "$NEW_TASK" "$TMP/received.jsonl"; then
        got=1
        break
    fi
    sleep 0.2
done
if ((got)); then
    check "the restored webhook delivers, signed with its original secret" python3 - "$TMP/received.jsonl" "$NEW_TASK" "$WEBHOOK_SECRET" <<'PY'
import hashlib, hmac, json, sys
path, task, secret = sys.argv[1:]
for line in open(path):
    r = json.loads(line)
    if task not in r["body"]:
        continue
    parts = dict(p.split("=", 1) for p in r["headers"]["x-keel-signature"].split(","))
    expected = hmac.new(secret.encode(), f'{parts["t"]}.{r["body"]}'.encode(), hashlib.sha256).hexdigest()
    sys.exit(0 if hmac.compare_digest(parts["v1"], expected) else 1)
sys.exit(1)
PY
else
    fail "the restored webhook delivers, signed with its original secret (nothing received in ${WAIT_SECS}s)"
fi

if stop_keel "$RESTORED_PID"; then pass "restored keel stopped cleanly (exit 0)"; else fail "restored keel stopped cleanly (exit 0)"; fi

# --clean over the copy that has changed since (a login, a task, its delivery).
if scripts/pg-backup.sh restore --clean "$BACKUP" "$RESTORED_URL" 2>"$TMP/restore-clean.log" &&
    row_counts "$RESTORED_URL" | cmp -s "$TMP/counts-source.txt" -; then
    pass "restore --clean over a changed database brings the row counts back"
else
    tail -n 20 "$TMP/restore-clean.log" >&2 || true
    fail "restore --clean over a changed database brings the row counts back"
fi

echo
if ((FAILED == 0)); then
    echo "backup-test: all $PASSED checks passed (backup $backup_bytes bytes, ${backup_ms} ms)"
    exit 0
fi
echo "backup-test: $FAILED of $((PASSED + FAILED)) checks FAILED:"
printf '  - %s\n' "${FAILURES[@]}"
exit 1
