#!/usr/bin/env bash
# Benchmark of the task lists at scale (docs/performance.md, "The budgets": a task page over a
# project of 1 000 000 tasks, any filter and sort, p99 < 20 ms at 1 connection): one project seeded with `keel dev seed`, on
# PostgreSQL, a filtered and sorted page at the start of the list and at a deep cursor, and
# EXPLAIN (ANALYZE, BUFFERS) of the exact statements keel sends for them.
#
#   scripts/bench-tasks.sh            (or: make bench-tasks)
#
# Builds the release binary into ${CARGO_TARGET_DIR:-/tmp/keel-bench-target}, starts a private
# PostgreSQL + Redis through scripts/services.sh (own state directory and ports), seeds the
# project, runs keel on PostgreSQL, walks each list to its deep cursor once, drives every
# scenario with wrk from a separate process on 127.0.0.1, captures keel's SQL with
# PostgreSQL's statement log and EXPLAINs it through psql. The machine, the commands, ONE
# markdown table and the plans go to stdout; progress to stderr. Everything it started is
# stopped on exit.
#
# This is a benchmark, not a test: it asserts nothing about speed and fails only when the
# set-up fails or a scenario gives no answer at all.
#
# Knobs (environment):
#   KEEL_BENCH_PORT          keel's port                               (default 18081)
#   KEEL_BENCH_PG_PORT       PostgreSQL port                           (default 61471)
#   KEEL_BENCH_REDIS_PORT    Redis port                                (default 61421)
#   KEEL_BENCH_TASKS         tasks in the project                      (default 1000000)
#   KEEL_BENCH_SEED_BATCH    tasks per seed transaction                (default 4000)
#   KEEL_BENCH_DEEP_PAGES    pages walked to reach the deep cursor     (default 1000)
#   KEEL_BENCH_CONNS         wrk connections                           (default 16)
#   KEEL_BENCH_SECS          seconds per scenario                      (default 20)
#   KEEL_BENCH_SOLO_SECS     seconds of the same request on 1 connection (default 10; 0: skip)
#   KEEL_BENCH_IDLE_WAIT_SECS  how long to wait for other processes to go quiet (default 120)
#   KEEL_BENCH_SKIP_BUILD=1  use the binary already in CARGO_TARGET_DIR
# KEEL_WORKERS and KEEL_DB_MAX_CONNECTIONS are passed through to keel and printed.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/tmp/keel-bench-target}"
PORT="${KEEL_BENCH_PORT:-18081}"
# Above Linux's ephemeral range (32768–60999): a port in it can be held for a minute by some
# client connection's TIME-WAIT (seen here when a test suite hammers its own PostgreSQL), and
# PostgreSQL then refuses to start.
PG_PORT="${KEEL_BENCH_PG_PORT:-61471}"
REDIS_PORT="${KEEL_BENCH_REDIS_PORT:-61421}"
TASKS="${KEEL_BENCH_TASKS:-1000000}"
SEED_BATCH="${KEEL_BENCH_SEED_BATCH:-4000}"
DEEP_PAGES="${KEEL_BENCH_DEEP_PAGES:-1000}"
CONNS="${KEEL_BENCH_CONNS:-16}"
SECS="${KEEL_BENCH_SECS:-20}"
SOLO_SECS="${KEEL_BENCH_SOLO_SECS:-10}"
PAGE=50
BASE="http://127.0.0.1:$PORT"
KEEL_BIN="$CARGO_TARGET_DIR/release/keel"
PG_BIN="${KEEL_PG_BIN:-/usr/lib/postgresql/15/bin}"

# shellcheck source=scripts/bench-lib.sh
source "$REPO/scripts/bench-lib.sh"
bench_init bench-tasks


# ---------------------------------------------------------------------------------------------
# Tools, build, services
# ---------------------------------------------------------------------------------------------

bench_require_tools
command -v python3 >/dev/null 2>&1 || die "python3 is required (it turns the statement log into EXPLAINs)"

bench_build

bench_start_services
PG_LOG="$PG_DIR/postgres.log"
PSQL=("$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PG_PORT" -U keel -d keel)

bench_keel_vars KEEL_WORKERS KEEL_DB_MAX_CONNECTIONS

# ---------------------------------------------------------------------------------------------
# Seed (keel dev seed applies the migrations first), then fresh statistics and visibility map
# ---------------------------------------------------------------------------------------------

SEED_CMD=("$KEEL_BIN" dev seed --tasks "$TASKS" --batch "$SEED_BATCH")
log "seeding: $(show "${SEED_CMD[@]}")"
bench_seed tasks "${SEED_CMD[@]:3}"
COMMANDS+=("$(show env "${KEEL_ENV_VARS[@]}" "${SEED_CMD[@]}")")
PROJECT_ID="$(seed_project_id tasks)"
ASSIGNEE_ID="$(seed_member_id tasks 2)"
SEED_LINE="$(grep '^seeded ' "$WORK/tasks.seed")"
[[ -n "$PROJECT_ID" && -n "$ASSIGNEE_ID" ]] || die "no project or member id in the seed's output"
LABEL=bug

VACUUM_SQL="VACUUM (ANALYZE) tasks, task_labels, labels, projects, project_members, users"
log "$VACUUM_SQL"
VACUUM_T0="$(date +%s.%N)"
"${PSQL[@]}" -c "$VACUUM_SQL"
VACUUM_SECS="$(awk -v a="$VACUUM_T0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.0f", b - a }')"
COMMANDS+=("psql -h 127.0.0.1 -p $PG_PORT -U keel -d keel -c '$VACUUM_SQL'")
DB_SIZES="$("${PSQL[@]}" -At -F '|' -c "SELECT pg_size_pretty(pg_table_size('tasks')),
    pg_size_pretty(pg_indexes_size('tasks')), (SELECT count(*) FROM task_labels),
    pg_size_pretty(pg_total_relation_size('task_labels')), pg_size_pretty(pg_database_size('keel')),
    current_setting('shared_buffers')")"
IFS='|' read -r TASKS_HEAP TASKS_INDEXES TASK_LABEL_ROWS TASK_LABELS_SIZE DB_SIZE SHARED_BUFFERS <<<"$DB_SIZES"

# ---------------------------------------------------------------------------------------------
# keel, and the seed owner's token
# ---------------------------------------------------------------------------------------------

log "starting keel on $BASE"
env "${KEEL_ENV_VARS[@]}" "$KEEL_BIN" >"$WORK/keel.log" 2>&1 &
KEEL_PID=$!
COMMANDS+=("$(show env "${KEEL_ENV_VARS[@]}") $(show "$KEEL_BIN") &")
bench_wait_healthy
log "keel is up (pid $KEEL_PID)"

write_stats_lua
# login: a fresh access token of the seed owner in $AUTH and in $WORK/list.lua (the wrk script;
# the token lives in the file, so the printed commands carry no secret). Called before every
# walk and every wrk run: a whole run outlasts an access token's lifetime (KEEL_ACCESS_TOKEN_TTL).
login() {
    local status token
    status="$(curl -sS -o "$WORK/login.out" -w '%{http_code}' -H 'content-type: application/json' \
        --data '{"email":"seed-owner@example.com","password":"Seed-passw0rd"}' "$BASE/api/v1/auth/login")"
    [[ "$status" == 200 ]] || die "login of the seed owner answered $status: $(head -c 300 "$WORK/login.out")"
    token="$(sed -n 's/.*"accessToken":"\([^"]*\)".*/\1/p' "$WORK/login.out")"
    [[ -n "$token" ]] || die "no accessToken in the login answer"
    AUTH="Authorization: Bearer $token"
    {
        printf 'wrk.headers["Authorization"] = "Bearer %s"\n' "$token"
        cat "$WORK/stats.lua"
    } >"$WORK/list.lua"
}
login

TASKS_PATH="/api/v1/projects/$PROJECT_ID/tasks"
Q_A="status=todo,in_progress&sort=-createdAt&limit=$PAGE"
Q_C1="assignee=$ASSIGNEE_ID&sort=priority&limit=$PAGE"
Q_C2="label=$LABEL&sort=priority&limit=$PAGE"

# get QUERY: one page, its body in $WORK/page.json; fails unless 200.
get() {
    local status
    status="$(curl -sS -o "$WORK/page.json" -w '%{http_code}' -H "$AUTH" "$BASE$TASKS_PATH?$1")"
    [[ "$status" == 200 ]] || die "GET $TASKS_PATH?$1 answered $status: $(head -c 300 "$WORK/page.json")"
}
page_len() { grep -o '"identifier":' "$WORK/page.json" | wc -l; }

# walk NAME QUERY: follows nextCursor DEEP_PAGES times from the first page (bench_walk in
# bench-lib.sh: one connection, sequentially) with a fresh token; leaves the cursor of page
# DEEP_PAGES + 1 in $WORK/NAME.cursor and the walk's times in $WORK/NAME.walk.
walk() {
    log "$1: walking $DEEP_PAGES pages of $2"
    login
    bench_walk "$1" "$BASE$TASKS_PATH?$2" "$DEEP_PAGES" "$AUTH"
}

walk a "$Q_A"
walk c1 "$Q_C1"
walk c2 "$Q_C2"

declare -A SCENARIO_QUERY=(
    [a-first]="$Q_A"
    [a-deep]="$Q_A&cursor=$(cat "$WORK/a.cursor")"
    [c1-first]="$Q_C1"
    [c1-deep]="$Q_C1&cursor=$(cat "$WORK/c1.cursor")"
    [c2-first]="$Q_C2"
    [c2-deep]="$Q_C2&cursor=$(cat "$WORK/c2.cursor")"
)
SCENARIOS=(a-first a-deep c1-first c1-deep c2-first c2-deep)
query_of() { echo "${SCENARIO_QUERY[$1]}"; }
for s in "${SCENARIOS[@]}"; do
    get "$(query_of "$s")"
    (($(page_len) == PAGE)) || die "$s: a page of $(page_len) tasks, expected $PAGE"
done

# ---------------------------------------------------------------------------------------------
# keel's SQL for each scenario, from PostgreSQL's statement log
# ---------------------------------------------------------------------------------------------

pg_setting() {
    "${PSQL[@]}" -c "ALTER SYSTEM SET $1" -c "SELECT pg_reload_conf()" >/dev/null
    sleep 0.5
}
log "capturing keel's statements (log_min_duration_statement = 0 for one request per scenario)"
login
pg_setting "log_min_duration_statement = 0"
for s in "${SCENARIOS[@]}"; do
    offset="$(stat -c %s "$PG_LOG")"
    get "$(query_of "$s")"
    sleep 0.3
    tail -c +"$((offset + 1))" "$PG_LOG" >"$WORK/$s.pglog"
done
pg_setting "log_min_duration_statement = -1"
"${PSQL[@]}" -c "ALTER SYSTEM RESET log_min_duration_statement" -c "SELECT pg_reload_conf()" >/dev/null

# The list statement of a scenario's log as a psql script: PREPARE with keel's text, EXECUTE
# with the logged parameters (so the planner sees what it saw for keel), under EXPLAIN.
for s in "${SCENARIOS[@]}"; do
    python3 - "$WORK/$s.pglog" "$WORK/$s.prepare.sql" "$WORK/$s.execute.sql" <<'PY' ||
import re, sys
log = open(sys.argv[1], encoding="utf-8", errors="replace").read()
# "LOG:  duration: 0.4 ms  execute sqlx_s_3: SELECT ..." then "DETAIL:  parameters: $1 = '...'"
pattern = re.compile(r"execute [^:]*: (SELECT .*?FROM \"tasks\".*?)\n(?:.*?DETAIL:\s+parameters: (.*?)\n)?")
found = [m for m in pattern.finditer(log) if "ORDER BY" in m.group(1)]
if not found:
    sys.exit("no task list statement in the log")
sql, params = found[-1].group(1), found[-1].group(2) or ""
values = re.findall(r"\$\d+ = ('(?:[^']|'')*'|NULL)", params)
open(sys.argv[2], "w").write("PREPARE list AS " + sql + ";\n")
open(sys.argv[3], "w").write("EXECUTE list(" + ", ".join(values) + ");\n")
PY
        die "$s: could not find keel's task list statement in the PostgreSQL log"
done

# ---------------------------------------------------------------------------------------------
# CPU accounting and wrk (scripts/bench-lib.sh): this run's processes
# ---------------------------------------------------------------------------------------------


ROUTE_OK='route="/api/v1/projects/{id}/tasks",status_code="200"'
# row NAME LABEL NOTES
row() {
    local name="$1" label="$2" notes="$3" req dur rps errs sock ok server db_all db_list stmts verdict
    req="$(field "$name" requests)"
    dur="$(field "$name" duration_us)"
    rps="$(awk -v r="$req" -v d="$dur" 'BEGIN { v = r / (d / 1e6); if (v < 100) printf "%.1f", v; else printf "%.0f", v }')"
    errs=$(($(field "$name" s503) + $(field "$name" other)))
    sock=$(($(field "$name" connect) + $(field "$name" read) + $(field "$name" write) + $(field "$name" timeout)))
    local err_text="$errs"
    if ((sock > 0)); then err_text="$err_text + $sock socket errors/timeouts"; fi
    ok="$(delta "$name" http_requests_total "$ROUTE_OK")"
    server="$(awk -v s="$(delta "$name" http_request_duration_seconds_sum "$ROUTE_OK")" -v c="$ok" \
        'BEGIN { if (c > 0) printf "%.2f", s * 1000 / c; else print "?" }')"
    db_all="$(awk -v s="$(delta "$name" db_query_duration_seconds_sum '')" -v c="$ok" \
        'BEGIN { if (c > 0) printf "%.2f", s * 1000 / c; else print "?" }')"
    db_list="$(awk -v s="$(delta "$name" db_query_duration_seconds_sum 'operation="select",origin="request",table="tasks"')" \
        -v c="$(delta "$name" db_query_duration_seconds_count 'operation="select",origin="request",table="tasks"')" \
        'BEGIN { if (c > 0) printf "%.2f", s * 1000 / c; else print "?" }')"
    stmts="$(awk -v s="$(delta "$name" db_query_duration_seconds_count '')" -v c="$ok" \
        'BEGIN { if (c > 0) printf "%.1f", s / c; else print "?" }')"
    verdict="$(awk -v p="$(field "$name" p99)" -v e="$((errs + sock))" \
        'BEGIN { print (e > 0 ? "n/a (errors)" : p < 20000 ? "met" : "**missed**") }')"
    ROWS+=("| $label | $rps | $(ms "$(field "$name" p50)") | $(ms "$(field "$name" p95)") | $(ms "$(field "$name" p99)") | $verdict | $err_text | $server ms / $db_all ms / $db_list ms ($stmts statements) | $notes ($req requests in $(awk -v d="$dur" 'BEGIN { printf "%.1f", d / 1e6 }') s; other processes $(cat "$WORK/$name.others")% CPU) |")
}

bench_wait_quiet

log "warm-up (3 s, not reported)"
login
wrk -t2 -c"$CONNS" -d3s -s "$WORK/list.lua" "$BASE$TASKS_PATH?$Q_A" >/dev/null 2>&1

RUN_T0="$(date +%s.%N)"
RUN_BUSY0="$(busy_ticks)"
RUN_OWN0="$(own_ticks)"
declare -A LABELS=(
    [a-first]="(a) status=todo,in_progress, sort=-createdAt: first page"
    [a-deep]="(a) same, deep cursor (page $((DEEP_PAGES + 1)))"
    [c1-first]="(c) assignee=<member>, sort=priority: first page"
    [c1-deep]="(c) same, deep cursor (page $((DEEP_PAGES + 1)))"
    [c2-first]="(c) label=$LABEL, sort=priority: first page"
    [c2-deep]="(c) same, deep cursor (page $((DEEP_PAGES + 1)))"
)
for s in "${SCENARIOS[@]}"; do
    login
    run_wrk "$s" -t2 -c"$CONNS" -d"${SECS}s" --timeout 10s -s "$WORK/list.lua" "$BASE$TASKS_PATH?$(query_of "$s")"
    row "$s" "${LABELS[$s]}, $CONNS connections" "closed loop"
    # One request at a time: the service time, without queueing for the 2 CPUs.
    if ((SOLO_SECS > 0)); then
        login
        run_wrk "$s-solo" -t1 -c1 -d"${SOLO_SECS}s" --timeout 10s -s "$WORK/list.lua" "$BASE$TASKS_PATH?$(query_of "$s")"
        row "$s-solo" "${LABELS[$s]}, 1 connection" "one request at a time"
    fi
done
RUN_BUSY1="$(busy_ticks)"
RUN_OWN1="$(own_ticks)"
OTHERS_DURING="$(awk -v d=$(((RUN_BUSY1 - RUN_BUSY0) - (RUN_OWN1 - RUN_OWN0))) \
    -v s="$(awk -v a="$RUN_T0" -v b="$(date +%s.%N)" 'BEGIN { print b - a }')" \
    -v t="$TICKS" -v n="$(nproc)" 'BEGIN { v = 100 * d / (s * t * n); if (v < 0) v = 0; printf "%.0f\n", v }')"

# ---------------------------------------------------------------------------------------------
# EXPLAIN (ANALYZE, BUFFERS), warm cache: the plan for the logged parameters (a custom plan,
# what a connection uses for its first five executions) and the generic plan (what it may
# switch to afterwards, when the planner finds it no costlier)
# ---------------------------------------------------------------------------------------------

for s in "${SCENARIOS[@]}"; do
    log "EXPLAIN $s"
    {
        cat "$WORK/$s.prepare.sql"
        # Twice, the second reported: the first may read pages into the cache.
        echo "EXPLAIN (ANALYZE, BUFFERS) $(cat "$WORK/$s.execute.sql")"
        echo '\o '"$WORK/$s.custom.plan"
        echo "EXPLAIN (ANALYZE, BUFFERS) $(cat "$WORK/$s.execute.sql")"
        echo '\o '"$WORK/$s.generic.plan"
        echo "SET plan_cache_mode = force_generic_plan;"
        echo "EXPLAIN (ANALYZE, BUFFERS) $(cat "$WORK/$s.execute.sql")"
    } >"$WORK/$s.explain.sql"
    "${PSQL[@]}" -At -P pager=off -f "$WORK/$s.explain.sql" >/dev/null
done

# ---------------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------------

echo "### keel task list benchmark ($(date -u '+%Y-%m-%d %H:%M UTC'), $BUILT_FROM)"
echo
echo "Machine: $(nproc) CPUs ($(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)), $(awk '$1 == "MemTotal:" { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo) RAM, Linux $(uname -r)"
echo "Tools: $(rustc --version 2>/dev/null || echo rustc ?), $(wrk -v 2>&1 | head -n 1 | cut -d' ' -f1-2), PostgreSQL $("$PG_BIN/postgres" --version 2>/dev/null | awk '{ print $3 }') (shared_buffers $SHARED_BUFFERS), Redis $(redis-server --version | sed -n 's/.* v=\([^ ]*\).*/\1/p')"
echo "Data: $SEED_LINE (whole seed command ${SEED_SECS} s); VACUUM (ANALYZE) ${VACUUM_SECS} s. tasks: heap $TASKS_HEAP, indexes $TASKS_INDEXES; task_labels: $TASK_LABEL_ROWS rows, $TASK_LABELS_SIZE; database $DB_SIZE"
echo "Other processes on the machine used ${OTHERS_BEFORE}% of its CPU time just before the scenarios and ${OTHERS_DURING}% during them (load average at the end: $(cut -d' ' -f1-3 /proc/loadavg))"
echo
echo "Commands:"
echo
echo '```'
for c in "${COMMANDS[@]}"; do echo "$c"; done
echo '```'
echo
echo "wrk runs: $CONNS connections and 2 threads for ${SECS} s, then 1 connection for ${SOLO_SECS} s, each with a fresh bearer token of the seed owner (in <work>/list.lua). Deep cursor: the nextCursor after walking $DEEP_PAGES pages of $PAGE with curl, one request at a time. Query strings: (a) \`$Q_A\`, (c) \`${Q_C1/$ASSIGNEE_ID/<member>}\` and \`$Q_C2\`, deep rows with \`&cursor=...\`."
echo
echo "| scenario | requests/s | p50 | p95 | p99 | budget p99 < 20 ms | errors (non-2xx) | keel per answer: total / all SQL / list SELECT | notes |"
echo "|---|---:|---:|---:|---:|---|---|---|---|"
for r in "${ROWS[@]}"; do echo "$r"; done
echo
for w in a c1 c2; do
    echo "Walk to the deep cursor, $w (one connection, one curl per page, time_total): $(cat "$WORK/$w.walk")."
done
echo
echo "keel per answer = keel's mean time per 200 answer of the route, the mean database time of all its statements, and the mean time of the list SELECT itself, from /metrics."
echo
echo "#### EXPLAIN (ANALYZE, BUFFERS) of keel's list statements"
echo
echo "Statements taken from PostgreSQL's log (log_min_duration_statement = 0 for one request per scenario), run through psql as PREPARE + EXECUTE with the logged parameters, after the wrk runs (warm cache). \"custom\" = the plan for these parameters (what each pooled connection uses for its first five executions); \"generic\" = plan_cache_mode = force_generic_plan (what a connection may switch to afterwards)."
for s in "${SCENARIOS[@]}"; do
    echo
    echo "##### $s: ${LABELS[$s]}"
    echo
    echo '```sql'
    sed -e 's/^PREPARE list AS //' -e 's/;$//' "$WORK/$s.prepare.sql"
    echo "-- parameters: $(sed -e 's/^EXECUTE list(//' -e 's/);$//' "$WORK/$s.execute.sql" | cut -c1-400)"
    echo '```'
    for kind in custom generic; do
        echo
        echo "$kind plan:"
        echo
        echo '```'
        cat "$WORK/$s.$kind.plan"
        echo '```'
    done
done
