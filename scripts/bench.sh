#!/usr/bin/env bash
# The performance budgets of docs/performance.md ("The budgets") in one run (issue #7 item 4, issue #17 item 6): one release build, one private
# PostgreSQL + Redis, keel configured like production (PostgreSQL + Redis, the Redis rate
# limiter on with its limits raised out of the way, KEEL_ENV=production: RUST_LOG=info and JSON
# logs, one access line per request, default argon2id cost), the two references the budgets
# are stated against, data seeded with `keel dev seed` (one project of 1 000 000 tasks, many
# small projects and users), then every scenario driven by wrk from separate processes, and ONE
# markdown table: requests/s, p50/p95/p99, errors, database statements per request, cache hit
# rate, peak RSS, the row's reference and the ratio to it, the budget and whether it was met.
#
#   scripts/bench.sh                  (or: make bench)
#   BENCH_QUICK=1 scripts/bench.sh    a short run to debug the harness (~20 000 tasks, ~3 s a row)
#   BENCH_PEER=1 scripts/bench.sh     also the Loco 1.2 peer (built once into BENCH_PEER_DIR)
#
# References, measured in the same run: (a) the bare actix-web handler
# (crates/api/examples/bare.rs) answering the same JSON document as the keel route compared with
# it (a project, a task, the profile, a page of tasks); (b) a one-statement read
# (crates/api/examples/one_statement.rs): actix-web + SeaORM selecting one row by primary key
# from the same PostgreSQL, no auth, no middleware, keel's worker count and pool.
# Rows: the references; GET /health; cached GET /projects/{id}, /tasks/{id}, /auth/profile (L1
# hits) and the first page of BENCH_PAGE_LIMIT tasks with labels, warm, against (a); uncached
# GET /projects/{id}, /tasks/{id}, /auth/profile on a second keel with KEEL_CACHE_LAYERS=none
# (limiter still on) against (b); the filtered task pages over the big project (two filter
# shapes, first page and deep cursor, at BENCH_LIST_CONNS connections and at 1) on that uncached
# keel too, since keel caches pages per query; GET /search over the big project at 1 connection
# (ten queries in turn, p99 < 50 ms); a task row in no cache tier; writes (PATCH,
# POST task, and POST /tasks/bulk updating 100 tasks, against the PATCH's p99); with BENCH_PEER=1 the peer's current user, project by id and list beside keel's
# same operations (ratio keel / peer); a paced reader alone and beside a login flood; last, the
# mixed workload (BENCH_MIX_RATE requests/s over BENCH_MIX_CONNS open connections: last,
# because the memory keel takes for its connections stays after them and would be counted in
# the flood's peak).
#
# Progress goes to stderr; the report (machine, tools, commands, the table, what bounds the
# comparison) to stdout. Everything it starts is stopped on exit, however the run ends.
# A benchmark, not a test: it asserts nothing about speed and fails only when the set-up fails
# or a scenario gives no answer at all.
#
# Knobs (environment; the BENCH_QUICK=1 default in brackets):
#   BENCH_QUICK=1             small data, short rows, less waiting for a quiet machine
#   BENCH_TASKS               tasks in the big project               1000000  [20000]
#   BENCH_SEED_BATCH          tasks per seed transaction             4000
#   BENCH_PROJECTS            small projects                         50       [10]
#   BENCH_PROJECT_TASKS       tasks per small project                200
#   BENCH_PROJECT_MEMBERS     members per small project (+ its owner) 9
#   BENCH_HOT_TASKS           tasks per small project the mix reads/writes 10
#   BENCH_DEEP_PAGES          pages walked to reach the deep cursor  1000     [20]
#   BENCH_DURATION            seconds per closed-loop row            20       [3]
#   BENCH_WARMUP              seconds of warm-up before a row        2        [1]
#   BENCH_CONNS               connections of the single-read rows, their references and the
#                             peer's rows (the budgets: 64)          64
#   BENCH_PAGE_LIMIT          tasks in the cached page row           25
#   BENCH_LIST_CONNS          connections of the task-page rows      16
#   BENCH_LIST_SOLO=0|1       also each task page on 1 connection    1
#   BENCH_WRITE_CONNS         connections of the write rows          16
#   BENCH_BULK_CONNS          connections of the bulk row (100 tasks a request) 4
#   BENCH_UNCACHED_IDS        task ids the uncached task read picks from 10000 [2000]
#   BENCH_MIX_CONNS           open connections of the mix            10000
#   BENCH_MIX_RATE            requests/s the mix offers              1000
#   BENCH_MIX_DURATION        seconds of the mix                     60       [10]
#   BENCH_MIX_THREADS         wrk threads of the mix                 2
#   BENCH_MIX_WEIGHTS         the mix, percent per request kind (see below)
#   BENCH_FLOOD_CONNS         concurrent logins in the flood         64
#   BENCH_FLOOD_DURATION      seconds of the flood                   20       [6]
#   BENCH_READER_CONNS        connections of the paced reader        4
#   BENCH_READER_PAUSE_MS     the paced reader's pause per request   10
#   BENCH_PEER=1              the Loco 1.2 peer's rows (not in CI; the first run builds it,
#                             about 25 minutes of CPU, at nice 19)
#   BENCH_PEER_DIR            where the peer is built and kept       ~/.cache/keel-bench-peer
#   BENCH_PEER_PROJECTS       projects in each side's list row       5
#   BENCH_PORT / BENCH_BARE_PORT / BENCH_UNCACHED_PORT   18084 / 18085 / 18086
#   BENCH_ONE_PORT / BENCH_PEER_PORT                     18087 / 18088
#   BENCH_PG_PORT / BENCH_REDIS_PORT                     61473 / 61423
#   KEEL_BENCH_IDLE_WAIT_SECS how long to wait for other processes to go quiet 120 [10]
#   KEEL_BENCH_SKIP_BUILD=1   use the binaries already in CARGO_TARGET_DIR
# KEEL_WORKERS, KEEL_DB_MAX_CONNECTIONS, KEEL_ARGON2_*, KEEL_KEEP_ALIVE_SECS and
# KEEL_CLIENT_REQUEST_TIMEOUT_SECS are passed through to keel (and the first two to reference
# (b) and the peer's pool) and printed.
set -euo pipefail

# wrk opens the mix's connections at once and each waits its random pause (up to 20 s) before
# its first request: more than keel's default first-request timeout (5 s), which a real
# client, sending at once, never meets. keel's keep-alive (75 s) already exceeds the pauses.
export KEEL_CLIENT_REQUEST_TIMEOUT_SECS="${KEEL_CLIENT_REQUEST_TIMEOUT_SECS:-30}"

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/tmp/keel-bench-target}"
QUICK="${BENCH_QUICK:-0}"
q() { if [[ "$QUICK" == 1 ]]; then echo "$2"; else echo "$1"; fi; }
TASKS="${BENCH_TASKS:-$(q 1000000 20000)}"
SEED_BATCH="${BENCH_SEED_BATCH:-4000}"
PROJECTS="${BENCH_PROJECTS:-$(q 50 10)}"
PROJECT_TASKS="${BENCH_PROJECT_TASKS:-200}"
PROJECT_MEMBERS="${BENCH_PROJECT_MEMBERS:-9}"
HOT_TASKS="${BENCH_HOT_TASKS:-10}"
DEEP_PAGES="${BENCH_DEEP_PAGES:-$(q 1000 20)}"
DURATION="${BENCH_DURATION:-$(q 20 3)}"
WARMUP="${BENCH_WARMUP:-$(q 2 1)}"
CONNS="${BENCH_CONNS:-64}"
PAGE_LIMIT="${BENCH_PAGE_LIMIT:-25}"
LIST_CONNS="${BENCH_LIST_CONNS:-16}"
LIST_SOLO="${BENCH_LIST_SOLO:-1}"
WRITE_CONNS="${BENCH_WRITE_CONNS:-16}"
BULK_CONNS="${BENCH_BULK_CONNS:-4}"
UNCACHED_IDS="${BENCH_UNCACHED_IDS:-$(q 10000 2000)}"
COLD_IDS="${BENCH_COLD_IDS:-$(q 300000 40000)}"
MIX_CONNS="${BENCH_MIX_CONNS:-10000}"
MIX_RATE="${BENCH_MIX_RATE:-1000}"
MIX_DURATION="${BENCH_MIX_DURATION:-$(q 60 10)}"
MIX_THREADS="${BENCH_MIX_THREADS:-2}"
MIX_WEIGHTS="${BENCH_MIX_WEIGHTS:-project=45,task=25,projects=5,list=10,biglist=5,patch=6,comment=4}"
FLOOD_CONNS="${BENCH_FLOOD_CONNS:-64}"
FLOOD_DURATION="${BENCH_FLOOD_DURATION:-$(q 20 6)}"
READER_CONNS="${BENCH_READER_CONNS:-4}"
READER_PAUSE_MS="${BENCH_READER_PAUSE_MS:-10}"
PORT="${BENCH_PORT:-18084}"
BARE_PORT="${BENCH_BARE_PORT:-18085}"
UNCACHED_PORT="${BENCH_UNCACHED_PORT:-18086}"
ONE_PORT="${BENCH_ONE_PORT:-18087}"
PEER="${BENCH_PEER:-0}"
PEER_PORT="${BENCH_PEER_PORT:-18088}"
PEER_PROJECTS="${BENCH_PEER_PROJECTS:-5}"
# Above Linux's ephemeral range (32768–60999), as in bench-tasks.sh.
PG_PORT="${BENCH_PG_PORT:-61473}"
REDIS_PORT="${BENCH_REDIS_PORT:-61423}"
export KEEL_BENCH_IDLE_WAIT_SECS="${KEEL_BENCH_IDLE_WAIT_SECS:-$(q 120 10)}"
BASE="http://127.0.0.1:$PORT"
MAIN_BASE="$BASE"
UNCACHED_BASE="http://127.0.0.1:$UNCACHED_PORT"
BARE_BASE="http://127.0.0.1:$BARE_PORT"
ONE_BASE="http://127.0.0.1:$ONE_PORT"
PEER_BASE="http://127.0.0.1:$PEER_PORT"
KEEL_BIN="$CARGO_TARGET_DIR/release/keel"
PG_BIN="${KEEL_PG_BIN:-/usr/lib/postgresql/15/bin}"
SEED_PASSWORD="${KEEL_SEED_PASSWORD:-Seed-passw0rd}"
BIG_KEY=BENCH
BIG_OWNER=seed-owner@example.com
BIG_MEMBERS=5

# shellcheck source=scripts/bench-lib.sh
source "$REPO/scripts/bench-lib.sh"
bench_init bench

RUN_START="$(date +%s)"
PHASES=()
PHASE_T0="$RUN_START"
# phase NAME: the time since the previous phase ended, for the report (how long each part takes).
phase() {
    local now
    now="$(date +%s)"
    PHASES+=("$1 $((now - PHASE_T0)) s")
    PHASE_T0="$now"
}

# ---------------------------------------------------------------------------------------------
# Tools, limits, build, services
# ---------------------------------------------------------------------------------------------

bench_require_tools
[[ -x "$PG_BIN/psql" ]] || command -v psql >/dev/null 2>&1 || die "psql is required"
PSQL_BIN="$PG_BIN/psql"
[[ -x "$PSQL_BIN" ]] || PSQL_BIN="$(command -v psql)"
command -v ss >/dev/null 2>&1 || die "ss (iproute2) is required"
EXTRA_PORTS=("$BARE_PORT" "$UNCACHED_PORT" "$ONE_PORT")
if [[ "$PEER" == 1 ]]; then EXTRA_PORTS+=("$PEER_PORT"); fi
for p in "${EXTRA_PORTS[@]}"; do
    if (echo >"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then die "127.0.0.1:$p is already in use"; fi
done

# Every open connection of the mix is a descriptor in wrk and one in keel; keel also holds its
# pool, Redis and log; wrk its threads' epoll sets.
bench_raise_nofile $((MIX_CONNS + 1024))

bench_build
bench_build_bare
bench_build_one_statement
phase build

bench_start_services
PSQL=("$PSQL_BIN" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PG_PORT" -U keel -d keel)
phase services

# The peer is built once (its scaffold generator needs a database: this run's PostgreSQL), then
# reused from BENCH_PEER_DIR.
if [[ "$PEER" == 1 ]]; then
    bench_peer_build "postgres://keel:keel@127.0.0.1:$PG_PORT"
    phase peer-build
fi

bench_keel_vars KEEL_WORKERS KEEL_DB_MAX_CONNECTIONS KEEL_ARGON2_MEMORY_KIB KEEL_ARGON2_ITERATIONS \
    KEEL_ARGON2_PARALLELISM KEEL_ARGON2_MAX_CONCURRENT KEEL_KEEP_ALIVE_SECS KEEL_CLIENT_REQUEST_TIMEOUT_SECS
# The servers run as in production (as the budgets require): KEEL_ENV=production — JSON logs at RUST_LOG=info,
# one access line per request — which also requires a webhook encryption key (a fixed one: no
# webhook is registered), and mail turned off (production needs SMTP otherwise; no benchmark
# sends mail). The seed keeps KEEL_ENV_VARS (`keel dev seed` is refused in
# production; its own logs at warn).
SERVER_VARS=()
for v in "${KEEL_ENV_VARS[@]}"; do
    if [[ "$v" != RUST_LOG=* ]]; then SERVER_VARS+=("$v"); fi
done
SERVER_VARS+=(KEEL_ENV=production RUST_LOG=info KEEL_LOG_FORMAT=json KEEL_MAIL=disabled
    KEEL_WEBHOOK_ENCRYPTION_KEY=000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f)

# ---------------------------------------------------------------------------------------------
# Data: the big project (keel dev seed, as bench-tasks.sh), then many small projects and users
# ---------------------------------------------------------------------------------------------

SEED_CMD=(dev seed --tasks "$TASKS" --batch "$SEED_BATCH" --project-key "$BIG_KEY"
    --owner-email "$BIG_OWNER" --members "$BIG_MEMBERS")
log "seeding the big project: keel $(show "${SEED_CMD[@]}")"
bench_seed big "${SEED_CMD[@]:2}"
BIG_SEED_SECS="$SEED_SECS"
COMMANDS+=("$(show env "${KEEL_ENV_VARS[@]}" "$KEEL_BIN" "${SEED_CMD[@]}")")
BIG_ID="$(seed_project_id big)"
ASSIGNEE_ID="$(seed_member_id big 2)"
[[ -n "$BIG_ID" && -n "$ASSIGNEE_ID" ]] || die "no project or member id in the seed's output"
BIG_SEED_LINE="$(grep '^seeded ' "$WORK/big.seed" || echo "seeded ?")"
phase "seed-big"

# The small projects: P001… each with an owner and PROJECT_MEMBERS members of its own
# (seed-owner@pNNN.example.com, seed-member-<i>@pNNN.example.com). Their accounts are hashed at
# a cheap argon2id cost so that logging in hundreds of them before the mix takes seconds; the
# flood logs in as the big project's owner, hashed at keel's cost (the stored hash carries its
# own cost, which verification uses).
SEED_EXTRA_ENV=(KEEL_ARGON2_MEMORY_KIB=8192 KEEL_ARGON2_ITERATIONS=1 KEEL_ARGON2_PARALLELISM=1)
SEED_QUIET=1
SMALL_IDS=()
SMALL_KEYS=()
log "seeding $PROJECTS small projects of $PROJECT_TASKS tasks and $((PROJECT_MEMBERS + 1)) users each"
for ((i = 1; i <= PROJECTS; i++)); do
    key="$(printf 'P%03d' "$i")"
    bench_seed "small-$key" --tasks "$PROJECT_TASKS" --batch "$SEED_BATCH" --project-key "$key" \
        --owner-email "seed-owner@${key,,}.example.com" --members "$PROJECT_MEMBERS" --labels 8
    SMALL_IDS+=("$(seed_project_id "small-$key")")
    SMALL_KEYS+=("$key")
    [[ -n "${SMALL_IDS[-1]}" ]] || die "no project id in the output of the seed of $key"
done
SEED_QUIET=0
SEED_EXTRA_ENV=()
COMMANDS+=("for i in 1..$PROJECTS: $(show env "${KEEL_ENV_VARS[@]}" KEEL_ARGON2_MEMORY_KIB=8192 KEEL_ARGON2_ITERATIONS=1 KEEL_ARGON2_PARALLELISM=1 "$KEEL_BIN" dev seed --tasks "$PROJECT_TASKS" --batch "$SEED_BATCH") --project-key P\$(printf %03d \$i) --owner-email seed-owner@p\$(printf %03d \$i).example.com --members $PROJECT_MEMBERS --labels 8")
phase "seed-small"

VACUUM_SQL="VACUUM (ANALYZE) tasks, task_labels, labels, projects, project_members, users"
log "$VACUUM_SQL"
"${PSQL[@]}" -c "$VACUUM_SQL"
COMMANDS+=("psql -h 127.0.0.1 -p $PG_PORT -U keel -d keel -c '$VACUUM_SQL'")
COMMANDS+=("psql … -c 'SELECT … FROM tasks …'   # the ids the wrk scripts use: $HOT_TASKS hot tasks per small project, the big project's first 1000 tasks, $UNCACHED_IDS random ones")
IFS='|' read -r DB_USERS DB_PROJECTS DB_TASKS DB_SIZE <<<"$("${PSQL[@]}" -At -F '|' -c \
    "SELECT (SELECT count(*) FROM users), (SELECT count(*) FROM projects), (SELECT count(*) FROM tasks), pg_size_pretty(pg_database_size('keel'))")"
phase vacuum

# Ids the Lua scripts use: the hot tasks of each small project, the first 1000 tasks of the
# big project (the write rows), a random sample of it (the uncached task read), and a larger
# sample beyond the first 1000 for the cold-row read, each id read once.
"${PSQL[@]}" -At -F ' ' -c "SELECT p.key, t.id FROM tasks t JOIN projects p ON p.id = t.project_id
    WHERE p.key LIKE 'P%' AND t.number <= $HOT_TASKS ORDER BY p.key, t.number" >"$WORK/hot.txt"
"${PSQL[@]}" -At -c "SELECT id FROM tasks WHERE project_id = '$BIG_ID' AND number <= 1000 ORDER BY number" >"$WORK/big-hot.txt"
"${PSQL[@]}" -At -c "SELECT id FROM tasks WHERE project_id = '$BIG_ID' ORDER BY random() LIMIT $UNCACHED_IDS" >"$WORK/big-sample.txt"
"${PSQL[@]}" -At -c "SELECT id FROM tasks WHERE project_id = '$BIG_ID' AND number > 1000 ORDER BY random() LIMIT $COLD_IDS" >"$WORK/big-cold.txt"
(($(wc -l <"$WORK/hot.txt") == PROJECTS * HOT_TASKS)) || die "expected $((PROJECTS * HOT_TASKS)) hot tasks, got $(wc -l <"$WORK/hot.txt")"

# ---------------------------------------------------------------------------------------------
# keel (as in production: SERVER_VARS), the two references beside it
# ---------------------------------------------------------------------------------------------

# Each server's log is opened for appending: the script counts a row's access lines, then
# empties it (at one JSON line per request, a full run's logs would take gigabytes of /tmp).
log "starting keel on $BASE"
env "${SERVER_VARS[@]}" "$KEEL_BIN" >>"$WORK/keel.log" 2>&1 &
KEEL_PID=$!
COMMANDS+=("$(show env "${SERVER_VARS[@]}") $(show "$KEEL_BIN") >>keel.log 2>&1 &")
bench_wait_healthy
log "keel is up (pid $KEEL_PID)"
# The listen backlog keel asked for (ss shows it as Send-Q of the listening socket).
KEEL_BACKLOG="$(ss -Hltn "( sport = :$PORT )" | awk 'NR == 1 { print $3 }')"

# login EMAIL [BASE] [PASSWORD]: a fresh access token (fails unless 200).
login() {
    local status token
    status="$(curl -sS -o "$WORK/login.out" -w '%{http_code}' -H 'content-type: application/json' \
        --data "{\"email\":\"$1\",\"password\":\"${3:-$SEED_PASSWORD}\"}" "${2:-$MAIN_BASE}/api/v1/auth/login")"
    [[ "$status" == 200 ]] || die "login of $1 answered $status: $(head -c 300 "$WORK/login.out")"
    token="$(sed -n 's/.*"accessToken":"\([^"]*\)".*/\1/p' "$WORK/login.out")"
    [[ -n "$token" ]] || die "no accessToken in the login answer of $1"
    echo "$token"
}
# api TOKEN METHOD URL [BODY]: the body in $WORK/api.out; fails unless 2xx.
api() {
    local status args=(-sS -o "$WORK/api.out" -w '%{http_code}' -X "$2" -H "authorization: Bearer $1")
    if [[ -n "${4:-}" ]]; then args+=(-H 'content-type: application/json' --data "$4"); fi
    status="$(curl "${args[@]}" "$3")"
    [[ "$status" == 2* ]] || die "$2 $3 answered $status: $(head -c 300 "$WORK/api.out")"
}

# The documents the cached rows read, as the big project's owner: the project, one of its
# tasks, the profile, the first page of PAGE_LIMIT tasks (with their labels). The bare handler
# answers each of them (reference (a)).
OWNER_TOKEN="$(login "$BIG_OWNER")"
OWNER_ID="$("${PSQL[@]}" -At -c "SELECT id FROM users WHERE email = '$BIG_OWNER'")"
HOT_TASK="$(head -n 1 "$WORK/big-hot.txt")"
declare -A DOC_PATH=(
    [project]="/api/v1/projects/$BIG_ID"
    [task]="/api/v1/tasks/$HOT_TASK"
    [profile]="/api/v1/auth/profile"
    [page]="/api/v1/projects/$BIG_ID/tasks?limit=$PAGE_LIMIT"
)
DOCS=(project task profile page)
mkdir -p "$WORK/bare"
for d in "${DOCS[@]}"; do
    api "$OWNER_TOKEN" GET "$BASE${DOC_PATH[$d]}"
    cp "$WORK/api.out" "$WORK/bare/$d.json"
done
PAGE_ROWS="$(grep -o '"labels":' "$WORK/bare/page.json" | wc -l)"
((PAGE_ROWS == PAGE_LIMIT)) || die "the first page of $PAGE_LIMIT tasks has $PAGE_ROWS tasks with labels"

log "starting the bare handler on $BARE_BASE (answering the documents of ${DOCS[*]})"
BARE_BIND="127.0.0.1:$BARE_PORT" BARE_BODY_DIR="$WORK/bare" "$BARE_BIN" >"$WORK/bare.log" 2>&1 &
BARE_PID=$!
SERVER_PIDS+=("$BARE_PID")
COMMANDS+=("BARE_BIND=127.0.0.1:$BARE_PORT BARE_BODY_DIR=<work>/bare $(show "$BARE_BIN") &   # GET /NAME answers <work>/bare/NAME.json: $(show "${DOCS[@]}"), keel's answers to the big project's owner")
bench_wait_url "$BARE_BASE/project" "$BARE_PID" "the bare handler"
declare -A BARE_BYTES KEEL_BYTES
for d in "${DOCS[@]}"; do
    BARE_BYTES[$d]="$(curl -fsS "$BARE_BASE/$d" | wc -c)"
    KEEL_BYTES[$d]="$(wc -c <"$WORK/bare/$d.json")"
done

# Reference (b): keel's environment, so the same database, pool size and worker count.
log "starting the one-statement read on $ONE_BASE"
ONE_VARS=("${SERVER_VARS[@]}" KEEL_BIND="127.0.0.1:$ONE_PORT")
env "${ONE_VARS[@]}" "$ONE_BIN" >"$WORK/one.log" 2>&1 &
ONE_PID=$!
SERVER_PIDS+=("$ONE_PID")
COMMANDS+=("$(show env "${ONE_VARS[@]}") $(show "$ONE_BIN") &")
declare -A ONE_PATH=(
    [project]="/projects/$BIG_ID"
    [task]="/tasks/$HOT_TASK"
    [user]="/users/$OWNER_ID"
)
for d in project task user; do
    bench_wait_url "$ONE_BASE${ONE_PATH[$d]}" "$ONE_PID" "the one-statement read"
done

# ---------------------------------------------------------------------------------------------
# The deep cursors (as bench-tasks.sh: follow nextCursor page after page)
# ---------------------------------------------------------------------------------------------

TASKS_URL="$BASE/api/v1/projects/$BIG_ID/tasks"
Q_A="status=todo,in_progress&sort=-createdAt&limit=50"
Q_C="assignee=$ASSIGNEE_ID&sort=priority&limit=50"
for w in a c; do
    qv="Q_${w^^}"
    log "walking $DEEP_PAGES pages of ${!qv}"
    bench_walk "$w" "$TASKS_URL?${!qv}" "$DEEP_PAGES" "Authorization: Bearer $(login "$BIG_OWNER")"
done
COMMANDS+=("curl -H 'Authorization: Bearer <token>' '$TASKS_URL?<query>[&cursor=<nextCursor>]'   # × $DEEP_PAGES per shape: the deep cursors")
phase "keel-and-walks"

# ---------------------------------------------------------------------------------------------
# wrk scripts
# ---------------------------------------------------------------------------------------------

write_stats_lua
# with_token FILE TOKEN [LUA...]: a wrk script sending TOKEN, then LUA, then the status counting.
# Tokens live in the script files, so the printed commands carry no secret.
with_token() {
    local file="$1" token="$2"
    shift 2
    {
        printf 'wrk.headers["Authorization"] = "Bearer %s"\n' "$token"
        printf '%s\n' "$@"
        cat "$WORK/stats.lua"
    } >"$WORK/$file"
}
# lua_list NAME FILE: the lines of FILE as a Lua array of strings.
lua_list() {
    printf 'local %s = {' "$1"
    sed 's/.*/"&",/' "$2" | tr -d '\n'
    printf '}\n'
}
cp "$WORK/stats.lua" "$WORK/get.lua"

# Writes in the big project: PATCH a task's title (always a real change), POST a task.
write_write_scripts() {
    # wrk.format's header table replaces wrk.headers: the token goes in it too.
    with_token patch.lua "$1" "$(lua_list tasks "$WORK/big-hot.txt")" '
local n = 0
local headers = { ["Authorization"] = wrk.headers["Authorization"], ["Content-Type"] = "application/json" }
request = function()
    n = n + 1
    return wrk.format("PATCH", "/api/v1/tasks/" .. tasks[math.random(#tasks)], headers,
        string.format([[{"title":"Bench edit %d-%d"}]], tid, n))
end
function init_hook(args) math.randomseed(os.time() + 7919 * tid) end'
    with_token post.lua "$1" "
local path = \"/api/v1/projects/$BIG_ID/tasks\"" '
local n = 0
local headers = { ["Authorization"] = wrk.headers["Authorization"], ["Content-Type"] = "application/json" }
request = function()
    n = n + 1
    return wrk.format("POST", path, headers, string.format([[{"title":"Bench task %d-%d"}]], tid, n))
end'
    # 100 distinct tasks a request: a window of the 1000 at a random offset, their titles
    # changed (always a real change).
    with_token bulk.lua "$1" "$(lua_list tasks "$WORK/big-hot.txt")" '
local n = 0
local headers = { ["Authorization"] = wrk.headers["Authorization"], ["Content-Type"] = "application/json" }
request = function()
    n = n + 1
    local start = math.random(#tasks - 99)
    local ids = {}
    for i = start, start + 99 do ids[#ids + 1] = "\"" .. tasks[i] .. "\"" end
    return wrk.format("POST", "/api/v1/tasks/bulk", headers, string.format(
        [[{"ids":[%s],"action":"update","patch":{"title":"Bulk edit %d-%d"}}]], table.concat(ids, ","), tid, n))
end
function init_hook(args) math.randomseed(os.time() + 104729 * tid) end'
}

# ---------------------------------------------------------------------------------------------
# Rows
# ---------------------------------------------------------------------------------------------

declare -A LABEL HWM RSSMAX
ORDER=()
# measure NAME LABEL PID WRK-ARGS...: one row: VmHWM of PID reset, wrk run (run_wrk: output,
# /metrics before and after, other processes' CPU share), VmHWM read.
measure() {
    local name="$1" label="$2" pid="$3"
    shift 3
    LABEL[$name]="$label"
    ORDER+=("$name")
    hwm_reset "$pid" || log "warning: cannot reset VmHWM of pid $pid; its peak RSS is the process's lifetime peak"
    log_reset
    run_wrk "$name" "$@"
    HWM[$name]="$(pid_kib "$pid" VmHWM)"
    log_count "$name"
}
# The log of the keel a row measures (empty: no keel, e.g. a reference or the peer). log_reset
# empties it (it is open for appending); log_count NAME counts the row's access lines other
# than /metrics' into ACCESS[NAME] (compared in the report with keel's count of its answers).
LOGFILE=""
declare -A ACCESS
log_reset() { if [[ -n "$LOGFILE" ]]; then : >"$LOGFILE"; fi; }
log_count() {
    if [[ -n "$LOGFILE" ]]; then
        ACCESS[$1]="$(grep -F '"request completed"' "$LOGFILE" | grep -Fvc '/metrics' || true)"
    fi
}
# warm CONNS SCRIPT URL: a warm-up; its last requests finish before the row's log and /metrics
# snapshots are taken.
warm() {
    wrk -t2 -c"$1" -d"${WARMUP}s" -s "$2" "$3" >/dev/null 2>&1 || true
    sleep 1
}

bench_wait_quiet
RUN_T0="$(date +%s.%N)"
RUN_BUSY0="$(busy_ticks)"
RUN_OWN0="$(own_ticks)"

# ids_lua FILE PREFIX: Lua that sends GET PREFIX<id> with an id drawn at random from FILE.
ids_lua() {
    lua_list ids "$1"
    printf 'local prefix = "%s"\n' "$2"
    echo 'request = function() return wrk.format("GET", prefix .. ids[math.random(#ids)]) end
function init_hook(args) math.randomseed(os.time() + 7919 * tid) end'
}
SAMPLE_N="$(wc -l <"$WORK/big-sample.txt")"
declare -A DOC_ROUTE=([project]="GET /projects/{id}" [task]="GET /tasks/{id}" [profile]="GET /auth/profile"
    [page]="GET /projects/{id}/tasks?limit=$PAGE_LIMIT")

# reference NAME LABEL PID WRK-ARGS...: a row of a server other than keel (a reference, the
# peer): no /metrics, no access log.
reference() {
    local NO_METRICS=1 LOGFILE=""
    measure "$@"
}
# Each keel row runs right after its reference, so that both see the same machine.

# keel's stack without authentication.
LOGFILE="$WORK/keel.log"
warm "$CONNS" "$WORK/get.lua" "$BASE/health"
measure health "GET /health ($CONNS conns)" "$KEEL_PID" \
    -t2 -c"$CONNS" -d"${DURATION}s" --timeout 10s -s "$WORK/get.lua" "$BASE/health"

# Cached authenticated reads: the same document again and again (L1 hits after the first),
# each after reference (a), the bare handler answering that document.
for d in "${DOCS[@]}"; do
    warm "$CONNS" "$WORK/get.lua" "$BARE_BASE/$d"
    reference "bare-$d" "(a) bare actix-web handler: the JSON of ${DOC_ROUTE[$d]} ($CONNS conns)" "$BARE_PID" \
        -t2 -c"$CONNS" -d"${DURATION}s" --timeout 10s -s "$WORK/get.lua" "$BARE_BASE/$d"
    with_token cached.lua "$(login "$BIG_OWNER")"
    warm "$CONNS" "$WORK/cached.lua" "$BASE${DOC_PATH[$d]}"
    if [[ "$d" == page ]]; then
        label="first page of $PAGE_LIMIT tasks with labels, warm: ${DOC_ROUTE[$d]}, cached ($CONNS conns)"
    else
        label="${DOC_ROUTE[$d]}, cached: L1 hits ($CONNS conns)"
    fi
    measure "cached-$d" "$label" "$KEEL_PID" \
        -t2 -c"$CONNS" -d"${DURATION}s" --timeout 10s -s "$WORK/cached.lua" "$BASE${DOC_PATH[$d]}"
done

# Uncached reads: a second keel, same database, Redis and limiter, KEEL_CACHE_LAYERS=none, so
# the principal (session + user) and the resource come from PostgreSQL on every request; each
# after reference (b), one SELECT by primary key of the same row (the same random task ids).
log "starting a second keel on $UNCACHED_BASE with KEEL_CACHE_LAYERS=none"
UNCACHED_VARS=("${SERVER_VARS[@]}" KEEL_BIND="127.0.0.1:$UNCACHED_PORT" KEEL_CACHE_LAYERS=none)
env "${UNCACHED_VARS[@]}" "$KEEL_BIN" >>"$WORK/keel-uncached.log" 2>&1 &
UNCACHED_PID=$!
SERVER_PIDS+=("$UNCACHED_PID")
COMMANDS+=("$(show env "${UNCACHED_VARS[@]}") $(show "$KEEL_BIN") >>keel-uncached.log 2>&1 &")
bench_wait_url "$UNCACHED_BASE/health" "$UNCACHED_PID" "the uncached keel"
BASE="$UNCACHED_BASE" # /metrics of the instance measured
LOGFILE="$WORK/keel-uncached.log"
{
    ids_lua "$WORK/big-sample.txt" "/tasks/"
    cat "$WORK/stats.lua"
} >"$WORK/one-task.lua"
declare -A ONE_ROW=([project]=one-project [task]=one-task [profile]=one-user)
for d in project task profile; do
    if [[ "$d" == task ]]; then
        warm "$CONNS" "$WORK/one-task.lua" "$ONE_BASE"
        reference one-task "(b) one-statement read: SELECT a task by id, random of $SAMPLE_N in the big project ($CONNS conns)" "$ONE_PID" \
            -t2 -c"$CONNS" -d"${DURATION}s" --timeout 10s -s "$WORK/one-task.lua" "$ONE_BASE"
        with_token uncached.lua "$(login "$BIG_OWNER" "$UNCACHED_BASE")" "$(ids_lua "$WORK/big-sample.txt" "/api/v1/tasks/")"
        warm "$CONNS" "$WORK/uncached.lua" "$UNCACHED_BASE"
        measure uncached-task "GET /tasks/{id}, uncached: KEEL_CACHE_LAYERS=none, random of $SAMPLE_N in the big project ($CONNS conns)" "$UNCACHED_PID" \
            -t2 -c"$CONNS" -d"${DURATION}s" --timeout 10s -s "$WORK/uncached.lua" "$UNCACHED_BASE"
        continue
    fi
    if [[ "$d" == project ]]; then what="the big project"; else what="the profile's user"; fi
    warm "$CONNS" "$WORK/get.lua" "$ONE_BASE${ONE_PATH[${ONE_ROW[$d]#one-}]}"
    reference "${ONE_ROW[$d]}" "(b) one-statement read: SELECT $what by id ($CONNS conns)" "$ONE_PID" \
        -t2 -c"$CONNS" -d"${DURATION}s" --timeout 10s -s "$WORK/get.lua" "$ONE_BASE${ONE_PATH[${ONE_ROW[$d]#one-}]}"
    with_token uncached.lua "$(login "$BIG_OWNER" "$UNCACHED_BASE")"
    warm "$CONNS" "$WORK/uncached.lua" "$UNCACHED_BASE${DOC_PATH[$d]}"
    measure "uncached-$d" "${DOC_ROUTE[$d]}, uncached: KEEL_CACHE_LAYERS=none ($CONNS conns)" "$UNCACHED_PID" \
        -t2 -c"$CONNS" -d"${DURATION}s" --timeout 10s -s "$WORK/uncached.lua" "$UNCACHED_BASE${DOC_PATH[$d]}"
done

# Filtered task pages over the big project: bench-tasks.sh's shapes (a) and (c), first page and
# the cursor after DEEP_PAGES pages. On the uncached keel: keel caches a project's pages per
# query, so on the main keel every request after the first would be an L1 hit, and the budgets'
# page budget is about a page that is not in the cache (one statement beyond the principal).
declare -A LIST_QUERY=(
    [list-a-first]="$Q_A"
    [list-a-deep]="$Q_A&cursor=$(cat "$WORK/a.cursor")"
    [list-c-first]="$Q_C"
    [list-c-deep]="$Q_C&cursor=$(cat "$WORK/c.cursor")"
)
declare -A LIST_LABEL=(
    [list-a-first]="task page, uncached: status=todo,in_progress, sort=-createdAt, first page"
    [list-a-deep]="task page, uncached: same, deep cursor (page $((DEEP_PAGES + 1)))"
    [list-c-first]="task page, uncached: assignee=<member>, sort=priority, first page"
    [list-c-deep]="task page, uncached: same, deep cursor (page $((DEEP_PAGES + 1)))"
)
UNCACHED_TASKS_URL="$UNCACHED_BASE/api/v1/projects/$BIG_ID/tasks"
with_token list.lua "$(login "$BIG_OWNER" "$UNCACHED_BASE")"
warm "$LIST_CONNS" "$WORK/list.lua" "$UNCACHED_TASKS_URL?$Q_A"
for s in list-a-first list-a-deep list-c-first list-c-deep; do
    with_token list.lua "$(login "$BIG_OWNER" "$UNCACHED_BASE")"
    measure "$s" "${LIST_LABEL[$s]} ($LIST_CONNS conns)" "$UNCACHED_PID" \
        -t2 -c"$LIST_CONNS" -d"${DURATION}s" --timeout 10s -s "$WORK/list.lua" "$UNCACHED_TASKS_URL?${LIST_QUERY[$s]}"
    if [[ "$LIST_SOLO" == 1 ]]; then
        measure "$s-solo" "${LIST_LABEL[$s]} (1 conn)" "$UNCACHED_PID" \
            -t1 -c1 -d"${DURATION}s" --timeout 10s -s "$WORK/list.lua" "$UNCACHED_TASKS_URL?${LIST_QUERY[$s]}"
    fi
done
# Search over the big project (docs/api/search.md; budget: p99 < 50 ms at 1 connection over
# 1 000 000 tasks): the queries in turn — words of a tenth of the titles, a prefix, two words, a
# one-letter prefix, words of half the descriptions only, a number, an identifier, words found
# nowhere. Searches are never cached: the uncached keel answers as the main one would.
with_token search.lua "$(login "$BIG_OWNER" "$UNCACHED_BASE")" "
local qs = {'fix', 'migr', 'fix%20login', 'l', 'steps', 'seeded', '12345', '${BIG_KEY,,}-12345', 'xyzzy', 'zz'}
local i = 0
request = function()
    i = i + 1
    return wrk.format('GET', '/api/v1/search?limit=20&q=' .. qs[(i - 1) % #qs + 1])
end"
measure search "GET /search?q=…&limit=20 over the big project, 10 queries in turn: common, prefix, two words, one letter, description-only, a number, an identifier, nothing found (1 conn)" "$UNCACHED_PID" \
    -t1 -c1 -d"${DURATION}s" --timeout 10s -s "$WORK/search.lua" "$UNCACHED_BASE"
BASE="$MAIN_BASE"
LOGFILE="$WORK/keel.log"
bench_stop_pid "$UNCACHED_PID" "the uncached keel"
# Stopped and waited for: out of SERVER_PIDS, whose ids the exit trap signals.
SERVER_PIDS=("$BARE_PID" "$ONE_PID")

# A single row that is in neither cache tier, on the main keel with its cache on: every request
# reads a task id no request read before (thread t of 2 takes ids t, t + 2, …; no warm-up), so the
# row comes from PostgreSQL and is then put in L1 and L2, while the session, user and role are
# cache hits — what a read of a row nobody asked for lately costs in production.
with_token task-cold.lua "$(login "$BIG_OWNER")" "local path = \"$WORK/big-cold.txt\"" '
local tasks, i = {}, 0
request = function()
    i = i + 1
    local k = ((i - 1) * 2 + tid - 1) % #tasks + 1
    return wrk.format("GET", "/api/v1/tasks/" .. tasks[k])
end
function init_hook(args) for line in io.lines(path) do tasks[#tasks + 1] = line end end'
measure cold-task "GET /tasks/{id}, row in no cache tier: each of $(wc -l <"$WORK/big-cold.txt") ids read once, session/user/role cached ($CONNS conns)" "$KEEL_PID" \
    -t2 -c"$CONNS" -d"${DURATION}s" --timeout 10s -s "$WORK/task-cold.lua" "$BASE"
COLD_READS="$(field cold-task requests)"
if ((COLD_READS > $(wc -l <"$WORK/big-cold.txt"))); then
    log "warning: the cold-row read sent $COLD_READS requests over $(wc -l <"$WORK/big-cold.txt") ids: some ids were read twice (raise BENCH_COLD_IDS)"
fi

# Writes.
write_write_scripts "$(login "$BIG_OWNER")"
measure patch "PATCH /tasks/{id} (title), random of 1000 in the big project ($WRITE_CONNS conns)" "$KEEL_PID" \
    -t2 -c"$WRITE_CONNS" -d"${DURATION}s" --timeout 10s -s "$WORK/patch.lua" "$BASE"
measure post "POST /projects/{id}/tasks into the big project ($WRITE_CONNS conns)" "$KEEL_PID" \
    -t2 -c"$WRITE_CONNS" -d"${DURATION}s" --timeout 10s -s "$WORK/post.lua" "$BASE"
measure bulk "POST /tasks/bulk: update (title) of 100 of the same 1000 tasks ($BULK_CONNS conns)" "$KEEL_PID" \
    -t2 -c"$BULK_CONNS" -d"${DURATION}s" --timeout 30s -s "$WORK/bulk.lua" "$BASE"
phase "closed-loop-rows"

# ---------------------------------------------------------------------------------------------
# The peer (BENCH_PEER=1): a Loco 1.2 application on the same PostgreSQL, and keel's list of
# as many projects as the peer's list returns
# ---------------------------------------------------------------------------------------------

if [[ "$PEER" == 1 ]]; then
    # keel: a user who owns PEER_PROJECTS projects, registered and created through the API.
    PEER_EMAIL=bench-peer@example.com
    PEER_PASSWORD=Bench-passw0rd
    curl -fsS -o /dev/null -H 'content-type: application/json' \
        --data "{\"email\":\"$PEER_EMAIL\",\"password\":\"$PEER_PASSWORD\",\"name\":\"Bench peer\"}" \
        "$BASE/api/v1/auth/register" || die "keel: registering $PEER_EMAIL failed"
    LIST_TOKEN="$(login "$PEER_EMAIL" "$BASE" "$PEER_PASSWORD")"
    for ((i = 1; i <= PEER_PROJECTS; i++)); do
        api "$LIST_TOKEN" POST "$BASE/api/v1/projects" \
            "{\"key\":\"PEER$i\",\"name\":\"Peer project $i\",\"description\":\"A project of the peer comparison\"}"
    done
    COMMANDS+=("curl -X POST $BASE/api/v1/auth/register; curl -X POST $BASE/api/v1/projects × $PEER_PROJECTS   # keel: a user owning $PEER_PROJECTS projects, for the list")
    api "$LIST_TOKEN" GET "$BASE/api/v1/projects"
    KEEL_LIST_ROWS="$(grep -o '"key":' "$WORK/api.out" | wc -l)"
    ((KEEL_LIST_ROWS == PEER_PROJECTS)) || die "keel's GET /projects returned $KEEL_LIST_ROWS projects, not $PEER_PROJECTS"
    with_token keel-list.lua "$LIST_TOKEN"
    warm "$CONNS" "$WORK/keel-list.lua" "$BASE/api/v1/projects"
    measure keel-list "GET /projects: a list of $PEER_PROJECTS projects (for the peer's list) ($CONNS conns)" "$KEEL_PID" \
        -t2 -c"$CONNS" -d"${DURATION}s" --timeout 10s -s "$WORK/keel-list.lua" "$BASE/api/v1/projects"

    bench_peer_start "postgres://keel:keel@127.0.0.1:$PG_PORT" "$PEER_PORT"
    bench_peer_seed "$PEER_BASE" "$PEER_PROJECTS"
    with_token peer.lua "$PEER_TOKEN"
    for r in current project list; do
        case "$r" in
            current) path=/api/auth/current label="Loco 1.2 peer: GET /api/auth/current (JWT + the user's row)" ;;
            project) path="/api/projects/$PEER_PROJECT_ID" label="Loco 1.2 peer: GET /api/projects/{id} (scaffold: one select)" ;;
            list) path=/api/projects label="Loco 1.2 peer: GET /api/projects (scaffold list: $PEER_PROJECTS projects)" ;;
        esac
        warm "$CONNS" "$WORK/peer.lua" "$PEER_BASE$path"
        reference "peer-$r" "$label ($CONNS conns)" "$PEER_PID" \
            -t2 -c"$CONNS" -d"${DURATION}s" --timeout 10s -s "$WORK/peer.lua" "$PEER_BASE$path"
    done
    bench_stop_pid "$PEER_PID" "the peer"
    PEER_PID=""
    SERVER_PIDS=("$BARE_PID" "$ONE_PID")
    phase peer
fi

# ---------------------------------------------------------------------------------------------
# The paced reader alone, then beside a login flood (argon2id at keel's cost)
# ---------------------------------------------------------------------------------------------

READER_TOKEN="$(login "seed-member-1@p001.example.com")"
with_token reader.lua "$READER_TOKEN" "
local project = \"/api/v1/projects/${SMALL_IDS[0]}\"
local n = 0
request = function()
    n = n + 1
    if n % 2 == 0 then return wrk.format(\"GET\", project) end
    return wrk.format(\"GET\", \"/api/v1/auth/profile\")
end
function delay() return $READER_PAUSE_MS end"
LOGIN_BODY="{\"email\":\"$BIG_OWNER\",\"password\":\"$SEED_PASSWORD\"}"
{
    echo 'wrk.method = "POST"'
    echo 'wrk.headers["Content-Type"] = "application/json"'
    printf 'wrk.body = [[%s]]\n' "$LOGIN_BODY"
    cat "$WORK/stats.lua"
} >"$WORK/login.lua"

warm "$READER_CONNS" "$WORK/reader.lua" "$BASE"
measure reader "paced reader alone: profile / project, $READER_CONNS conns, ${READER_PAUSE_MS} ms pause" "$KEEL_PID" \
    -t1 -c"$READER_CONNS" -d"$((FLOOD_DURATION - 2))s" --timeout 10s -s "$WORK/reader.lua" "$BASE"

# The flood and the reader at once; keel's VmHWM reset before, RSS sampled every 100 ms.
LABEL[flood]="POST /auth/login flood, $FLOOD_CONNS conns (default argon2id cost)"
ORDER+=(flood)
hwm_reset "$KEEL_PID" || log "warning: cannot reset VmHWM"
RSS_BEFORE_FLOOD="$(pid_kib "$KEEL_PID" VmRSS)"
rss_sampler_start flood "$KEEL_PID"
FLOOD_CMD=(-t2 -c"$FLOOD_CONNS" -d"${FLOOD_DURATION}s" --timeout 30s -s "$WORK/login.lua" "$BASE/api/v1/auth/login")
COMMANDS+=("wrk $(show "${FLOOD_CMD[@]}") &   # the flood, in parallel with:")
log "flood: wrk $(show "${FLOOD_CMD[@]}") &"
metrics >"$WORK/flood.m0"
mark flood
wrk "${FLOOD_CMD[@]}" >"$WORK/flood.out" 2>&1 &
FLOOD_PID=$!
BG_PIDS+=("$FLOOD_PID")
sleep 1 # the login queue fills before the reader starts
run_wrk reader-flood -t1 -c"$READER_CONNS" -d"$((FLOOD_DURATION - 2))s" --timeout 10s -s "$WORK/reader.lua" "$BASE"
LABEL[reader-flood]="paced reader during the flood (same load as alone)"
ORDER+=(reader-flood)
wait "$FLOOD_PID" || die "wrk failed in the flood: $(cat "$WORK/flood.out")"
bg_forget "$FLOOD_PID"
others_pct flood
grep -q '^BENCH ' "$WORK/flood.out" || die "no BENCH line from the flood: $(cat "$WORK/flood.out")"
# Logins still queued when wrk hung up finish (or time out) within keel's 5 s queue timeout.
sleep 6
metrics >"$WORK/flood.m1"
HWM[flood]="$(pid_kib "$KEEL_PID" VmHWM)"
HWM[reader-flood]="${HWM[flood]}"
rss_sampler_stop
RSSMAX[flood]="$(cat "$WORK/flood.rssmax")"
RSS_AFTER_FLOOD="$(pid_kib "$KEEL_PID" VmRSS)"
phase flood

# ---------------------------------------------------------------------------------------------
# The mixed workload: MIX_CONNS connections, each pausing a random time before every request so
# that together they offer MIX_RATE requests/s, over every small project's users
# ---------------------------------------------------------------------------------------------

# Percent per request kind, as the cumulative thresholds the Lua script draws against.
declare -A MIX_W=()
IFS=',' read -r -a mix_parts <<<"$MIX_WEIGHTS"
MIX_KINDS=(project task projects list biglist patch comment)
for part in "${mix_parts[@]}"; do
    [[ " ${MIX_KINDS[*]} " == *" ${part%%=*} "* && "${part#*=}" =~ ^[0-9]+$ ]] ||
        die "BENCH_MIX_WEIGHTS: '$part' is not <kind>=<percent> with a kind among ${MIX_KINDS[*]}"
    MIX_W["${part%%=*}"]="${part#*=}"
done
mix_total=0
MIX_THRESHOLDS=""
for k in "${MIX_KINDS[@]}"; do
    mix_total=$((mix_total + ${MIX_W[$k]:-0}))
    MIX_THRESHOLDS="$MIX_THRESHOLDS$k = $mix_total, "
done
((mix_total == 100)) || die "BENCH_MIX_WEIGHTS must add up to 100 (got $mix_total): $MIX_WEIGHTS"
MIX_READS=$((${MIX_W[project]:-0} + ${MIX_W[task]:-0} + ${MIX_W[projects]:-0} + ${MIX_W[list]:-0} + ${MIX_W[biglist]:-0}))
MIX_MEAN_MS=$((MIX_CONNS * 1000 / MIX_RATE))
# wrk opens connections / threads connections per thread (rounded down).
MIX_PER_THREAD=$((MIX_CONNS / MIX_THREADS))

COMMANDS+=("curl -X POST $BASE/api/v1/auth/login   # each of the mix's users once, just before it (tokens go into <work>/mix.lua)")
log "logging in the mix's users ($((PROJECTS * (PROJECT_MEMBERS + 1))) of the small projects, $((BIG_MEMBERS + 1)) of the big one)"
{
    echo "local users = {"
    for ((i = 0; i < PROJECTS; i++)); do
        key="${SMALL_KEYS[$i]}"
        emails=("seed-owner@${key,,}.example.com")
        for ((m = 1; m <= PROJECT_MEMBERS; m++)); do emails+=("seed-member-$m@${key,,}.example.com"); done
        for email in "${emails[@]}"; do
            printf '{ "%s", %d },\n' "$(login "$email")" $((i + 1))
        done
    done
    echo "}"
    echo "local projects = {"
    for ((i = 0; i < PROJECTS; i++)); do
        printf '{ id = "%s", tasks = {' "${SMALL_IDS[$i]}"
        awk -v k="${SMALL_KEYS[$i]}" '$1 == k { printf "\"%s\",", $2 }' "$WORK/hot.txt"
        printf '} },\n'
    done
    echo "}"
    printf 'local big_tokens = {'
    emails=("$BIG_OWNER")
    for ((m = 1; m <= BIG_MEMBERS; m++)); do emails+=("seed-member-$m@example.com"); done
    for email in "${emails[@]}"; do
        printf '"%s",' "$(login "$email")"
    done
    printf '}\n'
    printf 'local big_lists = { "/api/v1/projects/%s/tasks?%s", "/api/v1/projects/%s/tasks?%s", "/api/v1/projects/%s/tasks?label=bug&sort=priority&limit=50" }\n' \
        "$BIG_ID" "$Q_A" "$BIG_ID" "assignee=me&sort=priority&limit=50" "$BIG_ID"
    echo 'local small_lists = { "status=todo,in_progress&sort=-createdAt&limit=20", "assignee=me&sort=priority&limit=20", "label=bug&sort=priority&limit=20" }'
    echo "local limits = { $MIX_THRESHOLDS}"
    echo "local mean_ms = $MIX_MEAN_MS"
    echo "local first_calls = $MIX_PER_THREAD"
    cat <<'LUA'
-- wrk calls delay() before every request of a connection, the first included. The pauses are
-- uniform in [0, 2 × mean]; a connection's first pause is drawn from the stationary residual of
-- that distribution (density (1 - x / 2m) / m), so the offered rate is flat from the start
-- instead of ramping up over the first 2 × mean. The first `first_calls` calls of a thread are
-- its connections' first pauses (wrk connects them all before any answer can arrive).
local calls = 0
function delay()
    calls = calls + 1
    local u = math.random()
    if calls <= first_calls then
        return math.floor(2 * mean_ms * (1 - math.sqrt(1 - u)))
    end
    return math.floor(2 * mean_ms * u)
end
local n = 0
request = function()
    n = n + 1
    local r = math.random(100)
    local user = users[math.random(#users)]
    local project = projects[user[2]]
    local task = project.tasks[math.random(#project.tasks)]
    local auth = { ["Authorization"] = "Bearer " .. user[1] }
    if r <= limits.project then
        return wrk.format("GET", "/api/v1/projects/" .. project.id, auth)
    elseif r <= limits.task then
        return wrk.format("GET", "/api/v1/tasks/" .. task, auth)
    elseif r <= limits.projects then
        return wrk.format("GET", "/api/v1/projects", auth)
    elseif r <= limits.list then
        return wrk.format("GET", "/api/v1/projects/" .. project.id .. "/tasks?" .. small_lists[math.random(#small_lists)], auth)
    elseif r <= limits.biglist then
        auth["Authorization"] = "Bearer " .. big_tokens[math.random(#big_tokens)]
        return wrk.format("GET", big_lists[math.random(#big_lists)], auth)
    end
    auth["Content-Type"] = "application/json"
    if r <= limits.patch then
        return wrk.format("PATCH", "/api/v1/tasks/" .. task, auth,
            string.format([[{"title":"Mixed edit %d-%d"}]], tid, n))
    end
    return wrk.format("POST", "/api/v1/tasks/" .. task .. "/comments", auth,
        string.format([[{"body":"Mixed workload comment %d-%d"}]], tid, n))
end
function init_hook(args) math.randomseed(os.time() + 7919 * tid) end
LUA
    cat "$WORK/stats.lua"
} >"$WORK/mix.lua"
[[ "$(grep -c '^{ "' "$WORK/mix.lua")" -gt 0 ]] || die "no users in the mix script"

# Open connections on keel's port, every 2 s (ss counts the server side of each).
conn_sampler_start() {
    (
        while kill -0 "$KEEL_PID" 2>/dev/null; do
            echo "$(date +%s) $(ss -Htn state established "( sport = :$PORT )" | wc -l)"
            sleep 2
        done
    ) >"$WORK/conns.txt" &
    CONN_SAMPLER_PID=$!
    BG_PIDS+=("$CONN_SAMPLER_PID")
}
# The kernel's accept-queue overflows (system-wide counters).
listen_drops() { awk '$1 == "TcpExt:" && !h { for (i = 2; i <= NF; i++) k[i] = $i; h = 1; next } $1 == "TcpExt:" { for (i = 2; i <= NF; i++) if (k[i] == "ListenOverflows" || k[i] == "ListenDrops") printf "%s=%s ", k[i], $i }' /proc/net/netstat; }

LISTEN_BEFORE="$(listen_drops)"
RSS_BEFORE_MIX="$(pid_kib "$KEEL_PID" VmRSS)"
THREADS_BEFORE_MIX="$(pid_kib "$KEEL_PID" Threads)"
rss_sampler_start mix "$KEEL_PID"
MIX_SAMPLER_PID="$SAMPLER_PID"
conn_sampler_start
MIX_T0="$(date +%s)"
measure mix "mixed workload: $MIX_RATE req/s offered over $MIX_CONNS connections ($MIX_DURATION s)" "$KEEL_PID" \
    -t"$MIX_THREADS" -c"$MIX_CONNS" -d"${MIX_DURATION}s" --timeout 10s -s "$WORK/mix.lua" "$BASE"
SAMPLER_PID="$MIX_SAMPLER_PID"
rss_sampler_stop
RSSMAX[mix]="$(cat "$WORK/mix.rssmax")"
kill -TERM "$CONN_SAMPLER_PID" 2>/dev/null || true
wait "$CONN_SAMPLER_PID" 2>/dev/null || true
bg_forget "$CONN_SAMPLER_PID"
LISTEN_AFTER="$(listen_drops)"
sleep 5 # wrk has closed its connections; what keel keeps afterwards
RSS_AFTER_MIX="$(pid_kib "$KEEL_PID" VmRSS)"
THREADS_AFTER_MIX="$(pid_kib "$KEEL_PID" Threads)"
MIX_KEEL_ANSWERS=$(($(delta mix http_requests_total '') - $(delta mix http_requests_total 'route="/metrics"')))
MIX_OVERFLOWS="$(awk -v a="$LISTEN_BEFORE" -v b="$LISTEN_AFTER" 'BEGIN { split(a, x, /[= ]+/); split(b, y, /[= ]+/); for (i = 1; i in x; i++) if (x[i] == "ListenOverflows") print y[i + 1] - x[i + 1] }')"
MIX_OVERFLOWS="${MIX_OVERFLOWS:-0}"
# Open connections: the samples taken while wrk surely ran (whole seconds: from its third
# second, connecting done, to two seconds before its end).
MIX_OPEN="$(awk -v t0="$MIX_T0" -v d="$MIX_DURATION" '$1 >= t0 + 3 && $1 <= t0 + d - 2 { n++; s += $2; if (min == "" || $2 < min) min = $2; if ($2 > max) max = $2 }
    END { if (n) printf "%d %d %d %d\n", min, s / n, max, n; else print "0 0 0 0" }' "$WORK/conns.txt")"
read -r MIX_OPEN_MIN MIX_OPEN_MEAN MIX_OPEN_MAX MIX_OPEN_N <<<"$MIX_OPEN"
phase mix

RUN_BUSY1="$(busy_ticks)"
RUN_OWN1="$(own_ticks)"
OTHERS_DURING="$(awk -v d=$(((RUN_BUSY1 - RUN_BUSY0) - (RUN_OWN1 - RUN_OWN0))) \
    -v s="$(awk -v a="$RUN_T0" -v b="$(date +%s.%N)" 'BEGIN { print b - a }')" \
    -v t="$TICKS" -v n="$(nproc)" 'BEGIN { v = 100 * d / (s * t * n); if (v < 0) v = 0; printf "%.0f\n", v }')"

# ---------------------------------------------------------------------------------------------
# Verdicts against the budgets (docs/performance.md), and the table
# ---------------------------------------------------------------------------------------------

# ge A B / lt A B: numeric comparisons for the verdicts.
ge() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a >= b) }'; }
lt() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a < b) }'; }
rate_of() { awk -v r="$(field "$1" requests)" -v d="$(field "$1" duration_us)" 'BEGIN { printf "%.3f\n", r / (d / 1e6) }'; }
hit_num() { local h; h="$(hit_rate "$1")"; echo "${h% %}"; }

READER_P99_ALONE="$(field reader p99)"
READER_P99_FLOOD="$(field reader-flood p99)"
BULK_RATIO="$(awk -v a="$(field bulk p99)" -v b="$(field patch p99)" 'BEGIN { if (b > 0) printf "%.2f\n", a / b; else print "?" }')"
FLOOD_RATIO="$(awk -v a="$READER_P99_FLOOD" -v b="$READER_P99_ALONE" 'BEGIN { if (b > 0) printf "%.2f\n", a / b; else print "?" }')"
MIX_RATE_GOT="$(rate_of mix)"
MIX_HIT="$(hit_num mix)"

# keel_answers NAME: the requests keel answered over scenario NAME by its own count
# (http_requests_total), its /metrics scrapes left out.
keel_answers() { echo $(($(delta "$1" http_requests_total '') - $(delta "$1" http_requests_total 'route="/metrics"'))); }
# stmt_count FILE: database statements counted in a /metrics snapshot (db_query_duration_seconds
# samples) of the requests (origin="request"), the background tables' left out as the
# statement-budget tests do (BACKGROUND_TABLES in tests/src/lib.rs; a test keeps this list the
# same): the outbox dispatcher, the webhook and the mail senders run whatever the requests do.
stmt_count() {
    awk 'index($0, "db_query_duration_seconds_count{") == 1 && !/origin="background"/ && !/table="(outbox_events|outbox_leases|webhook_deliveries|mail_outbox|event_feed|event_feed_marks|event_feed_recipients|task_subscriptions|notifications)"/ { s += $NF }
        END { printf "%.0f\n", s }' "$1"
}
# stmts NAME: database statements per request over scenario NAME ("?" without requests).
stmts() {
    awk -v a="$(stmt_count "$WORK/$1.m0")" -v b="$(stmt_count "$WORK/$1.m1")" -v c="$(keel_answers "$1")" \
        'BEGIN { if (c > 0) printf "%.2f\n", (b - a) / c; else print "?" }'
}
# ratio A B: the rate of row A over the rate of row B, 2 decimals (RATIO, shown);
# ratio_raw A B: 4 decimals (RATIO_RAW, what the verdicts compare).
ratio() { awk -v a="$(rate_of "$1")" -v b="$(rate_of "$2")" 'BEGIN { if (b > 0) printf "%.2f\n", a / b; else print "?" }'; }
ratio_raw() { awk -v a="$(rate_of "$1")" -v b="$(rate_of "$2")" 'BEGIN { if (b > 0) printf "%.4f\n", a / b; else print "?" }'; }

declare -A BUDGET VERDICT REF RATIO RATIO_RAW STMTS
yes_no() { if "$@"; then echo met; else echo "**missed**"; fi; }
no_errors() { (($(errors_total "$1") == 0)); }
p99_below() { lt "$(field "$1" p99)" "$2" && no_errors "$1"; }
ratio_ok() { [[ "${RATIO_RAW[$1]}" != "?" ]] && ge "${RATIO_RAW[$1]}" "$2" && no_errors "$1"; }
stmts_at_most() { [[ "${STMTS[$1]}" != "?" ]] && ge "$2" "${STMTS[$1]}"; }
bulk_ok() { [[ "$BULK_RATIO" != "?" ]] && ge 10 "$BULK_RATIO" && no_errors bulk; }
flood_ok() { [[ "$FLOOD_RATIO" != "?" ]] && ge 2 "$FLOOD_RATIO" && no_errors reader-flood; }
cached_ok() { ratio_ok "$1" 0.40 && p99_below "$1" 5000; }
uncached_ok() { ratio_ok "$1" 0.50 && stmts_at_most "$1" 2; }
page_ok() { p99_below "$1" "$2" && stmts_at_most "$1" 2; }
peer_ok() { ratio_ok "$1" 2 && no_errors "$2"; }

for name in "${ORDER[@]}"; do
    case "$name" in
        bare-*) STMTS[$name]="—" BUDGET[$name]="reference (a)" ;;
        one-*) STMTS[$name]="1 by design" BUDGET[$name]="reference (b)" ;;
        peer-*) STMTS[$name]="—" ;;
        *) STMTS[$name]="$(stmts "$name")" ;;
    esac
done
STMTS[reader-flood]="$(stmts reader-flood)"

# Cached single-resource reads and the warm page: against (a), the same document.
for d in project task profile; do
    REF[cached-$d]="(a) bare-$d"
    RATIO[cached-$d]="$(ratio "cached-$d" "bare-$d")"
    RATIO_RAW[cached-$d]="$(ratio_raw "cached-$d" "bare-$d")"
    BUDGET[cached-$d]="≥ 0.40 of (a), p99 < 5 ms"
    VERDICT[cached-$d]="$(yes_no cached_ok "cached-$d")"
done
REF[cached-page]="(a) bare-page"
RATIO[cached-page]="$(ratio cached-page bare-page)"
RATIO_RAW[cached-page]="$(ratio_raw cached-page bare-page)"
BUDGET[cached-page]="≥ 0.25 of (a)"
VERDICT[cached-page]="$(yes_no ratio_ok cached-page 0.25)"
# Uncached single-resource reads: against (b), the same table; at most 2 statements.
declare -A ONE_OF=([uncached-project]=one-project [uncached-task]=one-task [uncached-profile]=one-user [cold-task]=one-task)
for name in uncached-project uncached-task uncached-profile cold-task; do
    REF[$name]="(b) ${ONE_OF[$name]}"
    RATIO[$name]="$(ratio "$name" "${ONE_OF[$name]}")"
    RATIO_RAW[$name]="$(ratio_raw "$name" "${ONE_OF[$name]}")"
    BUDGET[$name]="≥ 0.50 of (b), ≤ 2 statements"
    VERDICT[$name]="$(yes_no uncached_ok "$name")"
done
# Task pages not in the cache: the page with its labels beyond the principal (2 statements).
for s in list-a-first list-a-deep list-c-first list-c-deep; do
    BUDGET[$s]="p99 < 50 ms per page at 16 conns, ≤ 2 statements"
    VERDICT[$s]="$(yes_no page_ok "$s" 50000)"
    BUDGET[$s-solo]="p99 < 20 ms per page at 1 conn, ≤ 2 statements"
    VERDICT[$s-solo]="$(yes_no page_ok "$s-solo" 20000)"
done
# Search: p99 at one connection, absolute (docs/performance.md, "Search").
BUDGET[search]="p99 < 50 ms at 1 conn"
VERDICT[search]="$(yes_no p99_below search 50000)"
# The peer: keel's same operation over the peer's (keel as deployed: its cache on); for the
# project also keel with its cache off, for information.
if [[ "$PEER" == 1 ]]; then
    declare -A KEEL_OF=([peer-current]=cached-profile [peer-project]=cached-project [peer-list]=keel-list)
    for name in peer-current peer-project peer-list; do
        REF[$name]="keel ${KEEL_OF[$name]}"
        RATIO[$name]="$(ratio "${KEEL_OF[$name]}" "$name")"
        RATIO_RAW[$name]="$(ratio_raw "${KEEL_OF[$name]}" "$name")"
        BUDGET[$name]="keel ≥ 2 × the peer"
        VERDICT[$name]="$(yes_no peer_ok "$name" "${KEEL_OF[$name]}")"
    done
    RATIO[peer-current]="${RATIO[peer-current]}× (uncached: $(ratio uncached-profile peer-current)×)"
    RATIO[peer-project]="${RATIO[peer-project]}× (uncached: $(ratio uncached-project peer-project)×)"
    RATIO[peer-list]="${RATIO[peer-list]}×"
fi

BUDGET[mix]="≈ $MIX_RATE req/s over $MIX_CONNS open conns, p95 < 50 ms, p99 < 100 ms, 0 errors, hit rate > 90 %"
MIX_FAILS=()
ge "$MIX_RATE_GOT" "$(awk -v r="$MIX_RATE" 'BEGIN { print 0.9 * r }')" || MIX_FAILS+=("rate $(rps mix)/s")
ge "$MIX_OPEN_MEAN" "$(awk -v c="$MIX_CONNS" 'BEGIN { print 0.9 * c }')" || MIX_FAILS+=("open conns (mean $MIX_OPEN_MEAN)")
lt "$(field mix p95)" 50000 || MIX_FAILS+=("p95")
lt "$(field mix p99)" 100000 || MIX_FAILS+=("p99")
no_errors mix || MIX_FAILS+=("errors")
if [[ "$MIX_HIT" == "—" ]] || ! lt 90 "$MIX_HIT"; then MIX_FAILS+=("hit rate"); fi
if ((${#MIX_FAILS[@]} == 0)); then
    VERDICT[mix]=met
else
    VERDICT[mix]="**missed**: $(printf '%s, ' "${MIX_FAILS[@]}" | sed 's/, $//')"
fi
BUDGET[reader]="baseline of the row below"
BUDGET[flood]="memory stays bounded"
VERDICT[flood]="see peak RSS"
REF[reader-flood]="reader"
RATIO[reader-flood]="p99 ${FLOOD_RATIO}×"
BUDGET[reader-flood]="p99 ≤ 2 × alone"
VERDICT[reader-flood]="$(yes_no flood_ok)"
REF[bulk]="patch"
RATIO[bulk]="p99 ${BULK_RATIO}×"
BUDGET[bulk]="p99 ≤ 10 × a PATCH's"
VERDICT[bulk]="$(yes_no bulk_ok)"

rss_cell() {
    local name="$1" v="${HWM[$1]:-}"
    if [[ -n "${RSSMAX[$name]:-}" ]]; then
        echo "$(mib "$v") (sampled max $(mib "${RSSMAX[$name]}"))"
    else
        mib "$v"
    fi
}
hit_cell() {
    case "$1" in
        bare-* | one-* | peer-* | flood) echo "—" ;;
        uncached-* | list-*) echo "off" ;;
        *) hit_rate "$1" ;;
    esac
}

for name in "${ORDER[@]}"; do
    ROWS+=("| $name | ${LABEL[$name]} | $(rps "$name") | $(ms "$(field "$name" p50)") | $(ms "$(field "$name" p95)") | $(ms "$(field "$name" p99)") | $(errors_text "$name") | ${STMTS[$name]:-—} | $(hit_cell "$name") | $(rss_cell "$name") | ${REF[$name]:-—} | ${RATIO[$name]:-—} | ${BUDGET[$name]:-—} | ${VERDICT[$name]:-—} |")
done

# The access log: one line per request keel answered, over every keel row measured with wrk.
ACCESS_LINES=0
ACCESS_ANSWERS=0
ACCESS_ODD=()
for name in "${!ACCESS[@]}"; do
    a="$(keel_answers "$name")"
    ACCESS_LINES=$((ACCESS_LINES + ACCESS[$name]))
    ACCESS_ANSWERS=$((ACCESS_ANSWERS + a))
    if ((ACCESS[$name] != a)); then ACCESS_ODD+=("$name: ${ACCESS[$name]} lines for $a answers"); fi
done

# Per route in the mix, from keel's /metrics: answers, 2xx and every other status, keel's mean time.
mix_routes() {
    local f
    for f in m0 m1; do
        awk 'index($0, "http_requests_total{") == 1 || index($0, "http_request_duration_seconds_sum{") == 1 { print }' "$WORK/mix.$f" |
            LC_ALL=C sort >"$WORK/mix.routes.$f"
    done
    LC_ALL=C join -a 2 -e 0 -o 0,1.2,2.2 "$WORK/mix.routes.m0" "$WORK/mix.routes.m1" | awk '
        { d = $3 - $2; if (d <= 0) next
          m = $1; sub(/{.*/, "", m)
          r = $1; sub(/.*route="/, "", r); sub(/".*/, "", r)
          me = $1; sub(/.*method="/, "", me); sub(/".*/, "", me)
          st = $1; sub(/.*status_code="/, "", st); sub(/".*/, "", st)
          k = me " " r
          if (m == "http_requests_total") {
              n[k] += d; keys[k] = 1
              if (st ~ /^2/) ok[k] += d; else other[k] = other[k] sprintf(", %d × %s", d, st)
          } else s[k] += d }
        END { for (k in keys)
                  printf "%s: %d answers, %d × 2xx%s, keel mean %.2f ms\n", k, n[k], ok[k], other[k], 1000 * s[k] / n[k] }' |
        sort -t: -k2 -nr
}

# ---------------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------------

phase report
ARGON2_DESC="m=${KEEL_ARGON2_MEMORY_KIB:-65536} KiB, t=${KEEL_ARGON2_ITERATIONS:-3}, p=${KEEL_ARGON2_PARALLELISM:-4}, max concurrent ${KEEL_ARGON2_MAX_CONCURRENT:-$(($(nproc) > 1 ? $(nproc) - 1 : 1)) (default: CPUs - 1, at least 1)}"
echo "### keel benchmark: the performance budgets in one run ($(date -u '+%Y-%m-%d %H:%M UTC'), $BUILT_FROM)"
echo
if [[ "$QUICK" == 1 ]]; then
    echo "**BENCH_QUICK=1: a short debugging run (small data, ${DURATION} s rows). Not figures to quote.**"
    echo
fi
echo "Machine: $(bench_machine); keel, PostgreSQL, Redis, the references$([[ "$PEER" == 1 ]] && echo ", the peer") and wrk all share it, traffic on 127.0.0.1"
echo "Tools: $(bench_tools)"
echo "wrk scripts: written by the script into <work>, each with the bearer tokens it sends (so the commands carry none), counting answers by status in response() and printing wrk's percentiles in done()."
echo "keel, as in production: KEEL_ENV=production, so JSON logs at RUST_LOG=info, one access line per request (to a file in <work>, emptied after each row); PostgreSQL + Redis (L1 + L2 cache, the Redis rate limiter), argon2id $ARGON2_DESC; rate limits raised out of the way (KEEL_RATE_LIMIT_*, the login limit too: the flood measures hashing capacity, bench-cache the limiter) — the limiter still runs on every request, on the uncached keel too; workers ${KEEL_WORKERS:-one per CPU}, pool ${KEEL_DB_MAX_CONNECTIONS:-10} connections; keep-alive ${KEEL_KEEP_ALIVE_SECS:-75 (default)} s, first-request timeout ${KEEL_CLIENT_REQUEST_TIMEOUT_SECS:-5 (default)} s; listen backlog $KEEL_BACKLOG (Send-Q of its listening socket; net.core.somaxconn $(cat /proc/sys/net/core/somaxconn)); open-file limit $NOFILE (hard $NOFILE_HARD)"
echo "References: (a) the bare actix-web handler (crates/api/examples/bare.rs), no middleware, answering each document keel's cached rows answer, as keel sent it to the big project's owner ($(for d in "${DOCS[@]}"; do printf '%s %s bytes (keel %s), ' "$d" "${BARE_BYTES[$d]}" "${KEEL_BYTES[$d]}"; done | sed 's/, $//'): same fields, keys possibly in another order), parsed once and serialized per request; (b) the one-statement read (crates/api/examples/one_statement.rs): actix-web + SeaORM, one SELECT by primary key of a project, a task or a user (the rows keel's uncached rows read) JSON-encoded, no auth, no middleware, run with keel's environment: same PostgreSQL, pool (KEEL_DB_MAX_CONNECTIONS and keel's connection checks) and worker count."
echo "Data: $DB_USERS users, $DB_PROJECTS projects, $DB_TASKS tasks, database $DB_SIZE. Big project $BIG_KEY: $BIG_SEED_LINE (seed command ${BIG_SEED_SECS} s); $PROJECTS small projects P001… of $PROJECT_TASKS tasks and $((PROJECT_MEMBERS + 1)) users each (their accounts hashed at m=8 MiB, t=1, to log them in quickly; the flood's account at keel's cost)."
echo "Other processes on the machine used ${OTHERS_BEFORE}% of its CPU time just before the rows and ${OTHERS_DURING}% during them (load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)); per row below the table."
echo "Phases (wall clock): $(printf '%s, ' "${PHASES[@]}" | sed 's/, $//')"
echo
echo "Commands:"
echo
echo '```'
for c in "${COMMANDS[@]}"; do echo "$c"; done
echo '```'
echo
echo "| row | scenario | requests/s | p50 | p95 | p99 | errors | statements / request | cache hit rate | peak RSS | reference | ratio | budget | met? |"
echo "|---|---|---:|---:|---:|---:|---|---:|---:|---:|---|---:|---|---|"
for r in "${ROWS[@]}"; do echo "$r"; done
echo
echo "- **Ratio**: the row's requests/s over its reference's, both measured in this run with the same connections and wrk threads; (a) for the cached reads and the warm page (the same JSON document), (b) for the uncached reads (a SELECT of the same table; the same random task ids for GET /tasks/{id}); for the peer's rows keel's requests/s over the peer's (see below)."
echo "- **Statements / request**: keel's db_query_duration_seconds_count samples (/metrics) after the row minus before it — the tables the outbox dispatcher and the webhook and mail senders poll left out, as the statement-budget tests do — over the requests keel answered in the row by its own count (http_requests_total, /metrics left out). (b) runs one statement per request by construction."
echo "- **Cached rows** (L1 hits): $(for d in project task profile page; do printf '%s %s of (a), ' "${DOC_ROUTE[$d]}" "${RATIO[cached-$d]}"; done | sed 's/, $//') — budget: ≥ 0.40 for single resources with p99 < 5 ms at 64 connections (here $CONNS), ≥ 0.25 for the first page of 25 tasks with labels, warm (here $PAGE_LIMIT)."
echo "- **Uncached rows** come from a second keel started for them with KEEL_CACHE_LAYERS=none (same database, Redis and limiter): every answer reads the principal (session + user) and the resource from PostgreSQL — $(for n in uncached-project uncached-task uncached-profile; do printf '%s %s statements (%s of (b)), ' "${LABEL[$n]%%,*}" "${STMTS[$n]}" "${RATIO[$n]}"; done | sed 's/, $//'). The task-page rows (bench-tasks.sh's filter shapes (a) and (c), first page and deep cursor) run on that keel too: keel caches a project's pages per query, so on the main keel they would measure L1 hits, while the page budget (p99 < 20 ms at 1 connection, < 50 ms at 16) is about a page read from the database."
if [[ "$PEER" == 1 ]]; then
    echo "- **Peer** (BENCH_PEER=1): a Loco $PEER_LOCO_VERSION application built by this script into $PEER_DIR (\`loco new --db postgres --bg async --assets none\`, \`cargo loco generate scaffold project 'name:string!' description:text status:string --api\`, \`cargo build --release\`; nothing of it in the repository), run with LOCO_ENV=production (its JSON logs at info to a file) on the same PostgreSQL (database $PEER_DB), pool $PEER_POOL connections, port $PEER_PORT; $PEER_PROJECTS projects created through its API, a user registered and logged in. Each peer row's reference is keel's same operation in this run — current user ↔ cached GET /auth/profile, project by id ↔ cached GET /projects/{id}, list ↔ GET /projects of a user owning $PEER_PROJECTS projects — and its ratio is keel / peer with keel as deployed (its cache on); in brackets keel with its cache off (the uncached rows) over the peer, which caches nothing. The budget aims at ≥ 2×."
fi
echo "- **Login flood: the paced reader's p99 rose ${FLOOD_RATIO}×** ($(ms "$READER_P99_ALONE") alone → $(ms "$READER_P99_FLOOD") during the flood; budget: ≤ 2×). Flood: $(field flood ok) × 200, $(field flood s503) × 503 seen by wrk. keel's peak RSS during the flood $(mib "${HWM[flood]}") (VmHWM reset to the current RSS, $(mib "$RSS_BEFORE_FLOOD"), just before; sampled max $(mib "${RSSMAX[flood]}"); $(mib "$RSS_AFTER_FLOOD") 6 s after)."
echo "- **Mixed workload**: $(rps mix) requests/s over $MIX_DURATION s ($(field mix requests) answers); open connections on keel's port, sampled every 2 s from wrk's third second to two seconds before its end: min $MIX_OPEN_MIN, mean $MIX_OPEN_MEAN, max $MIX_OPEN_MAX ($MIX_OPEN_N samples); kernel accept-queue counters (system-wide) before: ${LISTEN_BEFORE:-?}, after: ${LISTEN_AFTER:-?}."
echo "  keel's RSS: $(mib "$RSS_BEFORE_MIX") and $THREADS_BEFORE_MIX threads before the mix, peak $(mib "${HWM[mix]}"), $(mib "$RSS_AFTER_MIX") and $THREADS_AFTER_MIX threads 5 s after it. keel answered $MIX_KEEL_ANSWERS requests during the mix by its own count (http_requests_total; actix's own 408s are not counted there)."
if ((MIX_OVERFLOWS > 0)); then
    echo "  **Accept queue overflowed $MIX_OVERFLOWS times** during the mix (TcpExt ListenOverflows, a system-wide counter): keel's listening socket has a backlog of $KEEL_BACKLOG (ss; the kernel caps it at net.core.somaxconn) while wrk opens its $MIX_CONNS connections at once. A connection whose handshake overflowed completes only after the client retransmits (1 s, then 3 s, …); wrk starts the clock at a request's first byte, so that wait shows in no percentile."
fi
if (($(field mix s408) + $(field mix read) > 0)); then
    echo "  **keel closed connections under the mix**: $(field mix s408) × 408 — what actix sends when a new connection's first request has not come within keel's client request timeout (KEEL_CLIENT_REQUEST_TIMEOUT_SECS, here ${KEEL_CLIENT_REQUEST_TIMEOUT_SECS:-the default} s) — and $(field mix read) connections closed while idle between two requests or otherwise (wrk's read errors; keel's keep-alive timeout is KEEL_KEEP_ALIVE_SECS, here ${KEEL_KEEP_ALIVE_SECS:-the default, 75} s). Each connection waits $MIX_MEAN_MS ms on average (up to $((2 * MIX_MEAN_MS)) ms) before every request, its first included. wrk 4.1 also miscounts once connections are closed under it (a reconnected connection keeps its pending pause timer and arms another, so it later sends extra requests; an unsolicited 408 counts as an answer): with 408s or read errors, this row's rate and percentiles are not those of the intended load."
fi
echo "  Kinds, percent of requests: $MIX_WEIGHTS — reads $MIX_READS %, writes $((100 - MIX_READS)) %. Every request uses the token of one of $((PROJECTS * (PROJECT_MEMBERS + 1))) users drawn at random, on that user's project and its $HOT_TASKS hot tasks (cache-friendly ids); biglist = a first page over the big project as one of its $((BIG_MEMBERS + 1)) users (three filter shapes); patch = a new title; comment = POST /tasks/{id}/comments. The cache hit rate is keel's (L1 + L2 hits) / look-ups over the run, every look-up counted (the session and user look-ups of writes included)."
echo "  Pacing: each connection pauses uniform [0, $((2 * MIX_MEAN_MS))] ms (mean $MIX_MEAN_MS ms = $MIX_CONNS connections / $MIX_RATE requests/s) before every request, the first pause drawn so the rate is flat from the start. wrk stays **closed-loop**: a connection sends its next request only after the answer plus its pause, so a slow answer delays that connection's later requests (coordinated omission, per connection). With $MIX_CONNS mostly idle connections the other connections keep their schedule, so a stall is still sampled, but the latency of requests that a waiting connection would have sent meanwhile is not recorded and the percentiles understate the tail when answers take longer than a fraction of a second; an open-loop generator (wrk2 -R) would not. Latency counts from the request's first byte written, not from the connection's open."
echo "  Per route (keel's /metrics, taken 1 s after wrk stopped: they include requests wrk no longer waited for, which keel still served):"
mix_routes | sed 's/^/  - /'
echo "- Other processes' CPU share per row: $(for name in "${ORDER[@]}"; do if [[ -f "$WORK/$name.others" ]]; then printf '%s %s%%; ' "$name" "$(cat "$WORK/$name.others")"; fi; done | sed 's/; $//')."
if ((${#ACCESS_ODD[@]} == 0)); then
    echo "- Access log: keel wrote one JSON access line per request over every keel row ($ACCESS_LINES lines for $ACCESS_ANSWERS answers by its own count, /metrics left out)."
else
    echo "- **Access log**: $ACCESS_LINES JSON access lines for $ACCESS_ANSWERS answers over the keel rows (/metrics left out); rows where they differ: $(printf '%s; ' "${ACCESS_ODD[@]}" | sed 's/; $//')."
fi
echo "- Peak RSS is the VmHWM of the row's server (keel; the reference or the peer in their rows) over the row, reset through /proc/<pid>/clear_refs just before it; the mix and the flood also sample VmRSS every 100 ms."
echo "- Errors: non-2xx answers counted in wrk's response(), by status, plus wrk's socket errors (connect, read, write, timeout: wrk counts a connection the server closes as a read error and opens a new one)."
