#!/usr/bin/env bash
# Benchmark of the cache and the rate limiter (issue 5): an authenticated GET /projects/{id}
# uncached, from L2, from L1; what the limiter adds; the hit rate of a read-mostly mix.
#
#   scripts/bench-cache.sh            (or: make bench-cache)
#
# Builds the release binary into ${CARGO_TARGET_DIR:-/tmp/keel-bench-target}, starts a private
# PostgreSQL + Redis through scripts/services.sh, and runs keel on PostgreSQL once per
# configuration (KEEL_CACHE_LAYERS, KEEL_RATE_LIMIT_ENABLED, REDIS_URL), driving it with wrk
# on 127.0.0.1. Prints the machine, the commands and ONE markdown table on stdout (progress on
# stderr). Everything it started is stopped on exit.
#
# A benchmark, not a test: it asserts nothing about speed and fails only when the set-up
# fails or a scenario gives no answer at all.
#
# Knobs (environment):
#   KEEL_BENCH_PORT         keel's port                 (default 18082)
#   KEEL_BENCH_PG_PORT      PostgreSQL port             (default 61472)
#   KEEL_BENCH_REDIS_PORT   Redis port                  (default 61422)
#   KEEL_BENCH_SECS         seconds per scenario        (default 10)
#   KEEL_BENCH_CONNS        connections per scenario    (default 32)
#   KEEL_BENCH_IDLE_WAIT_SECS  how long to wait for other processes to go quiet (default 120)
#   KEEL_BENCH_SKIP_BUILD=1 use the binary already in CARGO_TARGET_DIR
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/tmp/keel-bench-target}"
PORT="${KEEL_BENCH_PORT:-18082}"
PG_PORT="${KEEL_BENCH_PG_PORT:-61472}"
REDIS_PORT="${KEEL_BENCH_REDIS_PORT:-61422}"
SECS="${KEEL_BENCH_SECS:-10}"
CONNS="${KEEL_BENCH_CONNS:-32}"
BASE="http://127.0.0.1:$PORT"
KEEL_BIN="$CARGO_TARGET_DIR/release/keel"

# shellcheck source=scripts/bench-lib.sh
source "$REPO/scripts/bench-lib.sh"
bench_init bench-cache

bench_require_tools
bench_build
bench_build_bare
bench_start_services

# Cheap hashing: logins are set-up here, not measured. The Redis URL is per row.
BENCH_NO_REDIS=1 bench_keel_vars KEEL_WORKERS KEEL_DB_MAX_CONNECTIONS
BASE_VARS=("${KEEL_ENV_VARS[@]}" KEEL_ARGON2_MEMORY_KIB=8192 KEEL_ARGON2_ITERATIONS=1)
REDIS_VAR="REDIS_URL=redis://127.0.0.1:$REDIS_PORT"

# start_keel VAR=VALUE...: keel with the base variables plus these; waits until healthy.
start_keel() {
    bench_stop_keel
    env "${BASE_VARS[@]}" "$@" "$KEEL_BIN" >>"$WORK/keel.log" 2>&1 &
    KEEL_PID=$!
    COMMANDS+=("$(show env "${BASE_VARS[@]}" "$@") $(show "$KEEL_BIN") &")
    bench_wait_healthy
}

# api METHOD PATH [BODY]: prints the body; fails unless the status is 2xx.
api() {
    local status args=(-sS -o "$WORK/api.out" -w '%{http_code}' -X "$1" -H "authorization: Bearer ${TOKEN:-}")
    if [[ -n "${3:-}" ]]; then args+=(-H 'content-type: application/json' --data "$3"); fi
    status="$(curl "${args[@]}" "$BASE$2")"
    [[ "$status" == 2* ]] || die "$1 $2 answered $status: $(head -c 300 "$WORK/api.out")"
    cat "$WORK/api.out"
}
json_field() { sed -n "s/.*\"$1\":\"\([^\"]*\)\".*/\1/p"; }
login() {
    TOKEN="$(api POST /api/v1/auth/login '{"email":"bench-cache@example.com","password":"Bench-passw0rd"}' | json_field accessToken)"
    [[ -n "$TOKEN" ]] || die "no access token"
}

# ---------------------------------------------------------------------------------------------
# Data: one user, one project, 50 tasks
# ---------------------------------------------------------------------------------------------

start_keel "$REDIS_VAR"
TOKEN="$(api POST /api/v1/auth/register '{"email":"bench-cache@example.com","password":"Bench-passw0rd","name":"Bench Cache"}' | json_field accessToken)"
PROJECT_ID="$(api POST /api/v1/projects '{"key":"CACHE","name":"Cache bench"}' | json_field id)"
[[ -n "$PROJECT_ID" ]] || die "no project id"
TASK_IDS=()
for n in $(seq 1 50); do
    TASK_IDS+=("$(api POST "/api/v1/projects/$PROJECT_ID/tasks" "{\"title\":\"task $n\"}" | json_field id)")
done
[[ -n "${TASK_IDS[49]}" ]] || die "could not create the tasks"
log "project $PROJECT_ID with ${#TASK_IDS[@]} tasks"

write_stats_lua
# get.lua: GET with the token (written per run: tokens expire); mix.lua: the read-mostly mix.
write_scripts() {
    {
        printf 'wrk.headers["Authorization"] = "Bearer %s"\n' "$TOKEN"
        cat "$WORK/stats.lua"
    } >"$WORK/get.lua"
    {
        printf 'local token = "%s"\nlocal project = "%s"\nlocal tasks = {' "$TOKEN" "$PROJECT_ID"
        printf '"%s",' "${TASK_IDS[@]}"
        cat <<'LUA'
}
local n = 0
local auth = {}
request = function()
    n = n + 1
    local task = tasks[(n * 7) % #tasks + 1]
    local r = n % 20
    auth["Authorization"] = "Bearer " .. token
    if r == 0 then
        -- 5 % writes: the m-th write sets task 7m mod 50 to priority m mod 4 + 1, so a
        -- task's next write (m + 50) changes it (50 mod 4 = 2): every write invalidates.
        local m = n / 20
        return wrk.format("PATCH", "/api/v1/tasks/" .. tasks[(m * 7) % #tasks + 1],
            { ["Authorization"] = auth["Authorization"], ["Content-Type"] = "application/json" },
            '{"priority":' .. (m % 4 + 1) .. '}')
    elseif r <= 8 then
        return wrk.format("GET", "/api/v1/projects/" .. project, auth)
    elseif r <= 15 then
        return wrk.format("GET", "/api/v1/tasks/" .. task, auth)
    else
        return wrk.format("GET", "/api/v1/projects", auth)
    end
end
LUA
        cat "$WORK/stats.lua"
    } >"$WORK/mix.lua"
}

# row NAME LABEL NOTES: a table row from scenario NAME, with the cache's hit rate over it.
row() {
    local name="$1" label="$2" notes="$3" req dur rps errs h1 m1 h2 m2 stmts ok
    req="$(field "$name" requests)"
    dur="$(field "$name" duration_us)"
    rps="$(awk -v r="$req" -v d="$dur" 'BEGIN { v = r / (d / 1e6); if (v < 100) printf "%.1f", v; else printf "%.0f", v }')"
    errs=$(($(field "$name" s503) + $(field "$name" other) + $(field "$name" connect) + $(field "$name" read) + $(field "$name" write) + $(field "$name" timeout)))
    h1="$(delta "$name" cache_hits_total 'cache_layer="l1"')"
    m1="$(delta "$name" cache_misses_total 'cache_layer="l1"')"
    h2="$(delta "$name" cache_hits_total 'cache_layer="l2"')"
    m2="$(delta "$name" cache_misses_total 'cache_layer="l2"')"
    ok="$(delta "$name" http_requests_total 'status_code="2')"
    stmts="$(awk -v s="$(delta "$name" db_query_duration_seconds_count '')" -v c="$ok" 'BEGIN { if (c > 0) printf "%.2f", s / c; else print "?" }')"
    ROWS+=("| $label | $rps | $(ms "$(field "$name" p50)") | $(ms "$(field "$name" p99)") | $errs | L1 $h1/$m1, L2 $h2/$m2 | $stmts | $notes (other processes $(cat "$WORK/$name.others")% CPU) |")
}

bench_wait_quiet

GET_PROJECT="$BASE/api/v1/projects/$PROJECT_ID"
# scenario NAME LABEL NOTES URL VAR=VALUE...: restart keel so configured, warm up, measure.
scenario() {
    local name="$1" label="$2" notes="$3" url="$4" script="${5}"
    shift 5
    start_keel "$@"
    login
    write_scripts
    wrk -t2 -c"$CONNS" -d2s -s "$WORK/$script.lua" "$url" >/dev/null 2>&1 # warm-up
    run_wrk "$name" -t2 -c"$CONNS" -d"${SECS}s" --timeout 10s -s "$WORK/$script.lua" "$url"
    row "$name" "$label" "$notes"
}

# The reference: a bare actix-web JSON handler (crates/api/examples/bare.rs), same machine, same run.
bench_stop_keel
BARE_PORT=$((PORT + 1))
BARE_BIND="127.0.0.1:$BARE_PORT" "$BARE_BIN" >"$WORK/bare.log" 2>&1 &
KEEL_PID=$! # measured and stopped like keel
COMMANDS+=("BARE_BIND=127.0.0.1:$BARE_PORT $(show "$BARE_BIN") &")
for ((i = 0; i < 100; i++)); do
    curl -fsS -o /dev/null "http://127.0.0.1:$BARE_PORT/" 2>/dev/null && break
    sleep 0.1
done
wrk -t2 -c"$CONNS" -d2s "http://127.0.0.1:$BARE_PORT/" >/dev/null 2>&1
NO_METRICS=1
run_wrk bare -t2 -c"$CONNS" -d"${SECS}s" --timeout 10s -s "$WORK/stats.lua" "http://127.0.0.1:$BARE_PORT/"
NO_METRICS=
row bare "bare actix-web JSON handler (the reference)" "examples/bare.rs, no middleware"

scenario health "GET /health (no auth, no cache: the stack's floor)" "middleware only" "$BASE/health" get "$REDIS_VAR"
scenario uncached "GET /projects/{id}, uncached" "session, user, role, project from PostgreSQL" "$GET_PROJECT" get "$REDIS_VAR" KEEL_CACHE_LAYERS=none
scenario l2 "GET /projects/{id}, L2 hits" "4 Redis reads per request" "$GET_PROJECT" get "$REDIS_VAR" KEEL_CACHE_LAYERS=l2
scenario l1 "GET /projects/{id}, L1 hits, Redis limiter" "the production set-up" "$GET_PROJECT" get "$REDIS_VAR"
scenario l1-local "GET /projects/{id}, L1 hits, in-process limiter" "no REDIS_URL" "$GET_PROJECT" get
scenario l1-nolimit "GET /projects/{id}, L1 hits, no limiter" "KEEL_RATE_LIMIT_ENABLED=false" "$GET_PROJECT" get "$REDIS_VAR" KEEL_RATE_LIMIT_ENABLED=false
scenario mix "read-mostly mix: 40 % project, 35 % task, 20 % list, 5 % PATCH task" "hit rate of the read paths" "$BASE" mix "$REDIS_VAR"

mix_rate="$(awk -v h1="$(delta mix cache_hits_total 'cache_layer="l1"')" -v m1="$(delta mix cache_misses_total 'cache_layer="l1"')" \
    -v h2="$(delta mix cache_hits_total 'cache_layer="l2"')" \
    'BEGIN { if (h1 + m1 > 0) printf "%.1f %% (L1 %.1f %%)", 100 * (h1 + h2) / (h1 + m1), 100 * h1 / (h1 + m1); else print "?" }')"
rps_of() { awk -v r="$(field "$1" requests)" -v d="$(field "$1" duration_us)" 'BEGIN { printf "%.0f", r / (d / 1e6) }'; }
us_per_req() { awk -v r="$(field "$1" requests)" -v d="$(field "$1" duration_us)" -v c=2 'BEGIN { printf "%.1f", c * 1e6 / (r / (d / 1e6)) }'; }

echo "### keel cache benchmark ($(date -u '+%Y-%m-%d %H:%M UTC'), $BUILT_FROM)"
echo
echo "Machine: $(nproc) CPUs ($(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)), Linux $(uname -r); keel, PostgreSQL, Redis and wrk on the same machine; other processes used ${OTHERS_BEFORE}% of the CPUs before the runs"
echo
echo "Commands:"
echo
echo '```'
for c in "${COMMANDS[@]}"; do echo "$c"; done
echo '```'
echo
echo "Every row: wrk -t2 -c$CONNS -d${SECS}s after a 2 s warm-up, keel restarted with the row's configuration. Cache column: hits/misses per layer during the run; statements: database statements per 2xx answer."
echo
echo "| scenario | requests/s | p50 | p99 | errors | cache hits/misses | statements | notes |"
echo "|---|---:|---:|---:|---:|---|---:|---|"
for r in "${ROWS[@]}"; do echo "$r"; done
echo
echo "Read-mostly mix: cache hit rate $mix_rate (hits in L1 or L2 over reads that missed L1 or hit it)."
echo "CPU per request (2 cores / throughput): L1 $(us_per_req l1) µs, in-process limiter $(us_per_req l1-local) µs, no limiter $(us_per_req l1-nolimit) µs, uncached $(us_per_req uncached) µs; a cached GET /projects/{id} reaches $(awk -v a="$(rps_of l1)" -v b="$(rps_of bare)" 'BEGIN { printf "%.0f", 100 * a / b }') % of the bare handler with the Redis limiter, $(awk -v a="$(rps_of l1-local)" -v b="$(rps_of bare)" 'BEGIN { printf "%.0f", 100 * a / b }') % with the in-process one, $(awk -v a="$(rps_of l1-nolimit)" -v b="$(rps_of bare)" 'BEGIN { printf "%.0f", 100 * a / b }') % without (budget: ≥ 40 %, docs/performance.md); /health $(awk -v a="$(rps_of health)" -v b="$(rps_of bare)" 'BEGIN { printf "%.0f", 100 * a / b }') %."
