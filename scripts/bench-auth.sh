#!/usr/bin/env bash
# Benchmark of the identity endpoints (issue 3): login with the default argon2id cost, the
# profile read alone and under a login flood, peak RSS during the flood, /health for context.
#
#   scripts/bench-auth.sh            (or: make bench-auth)
#
# Builds the release binary into ${CARGO_TARGET_DIR:-/tmp/keel-bench-target}, starts a private
# PostgreSQL + Redis through scripts/services.sh (own state directory and ports, so it never
# touches the integration tests' instances), runs keel on PostgreSQL, drives it with wrk from
# a separate process on 127.0.0.1 only, and prints the machine, the commands and ONE markdown
# table on stdout (progress goes to stderr). Everything it started is stopped on exit.
#
# This is a benchmark, not a test: it asserts nothing about speed and fails only when the
# set-up fails or a scenario gives no answer at all.
#
# Knobs (environment):
#   KEEL_BENCH_PORT          keel's port                          (default 18080)
#   KEEL_BENCH_PG_PORT       PostgreSQL port                      (default 55442)
#   KEEL_BENCH_REDIS_PORT    Redis port                           (default 56389)
#   KEEL_BENCH_SHORT_SECS    /health and profile runs             (default 10)
#   KEEL_BENCH_LOGIN_SECS    login runs at concurrency 1 and 2    (default 20)
#   KEEL_BENCH_FLOOD_SECS    the 64-login flood                   (default 20)
#   KEEL_BENCH_FLOOD_CONNS   concurrent logins in the flood       (default 64)
#   KEEL_BENCH_IDLE_WAIT_SECS  how long to wait for other processes to go quiet (default 120)
#   KEEL_BENCH_SKIP_BUILD=1  use the binary already in CARGO_TARGET_DIR
# The argon2 cost is keel's default unless KEEL_ARGON2_* are set in the environment (they
# are passed through and printed).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/tmp/keel-bench-target}"
PORT="${KEEL_BENCH_PORT:-18080}"
PG_PORT="${KEEL_BENCH_PG_PORT:-55442}"
REDIS_PORT="${KEEL_BENCH_REDIS_PORT:-56389}"
SHORT_SECS="${KEEL_BENCH_SHORT_SECS:-10}"
LOGIN_SECS="${KEEL_BENCH_LOGIN_SECS:-20}"
FLOOD_SECS="${KEEL_BENCH_FLOOD_SECS:-20}"
FLOOD_CONNS="${KEEL_BENCH_FLOOD_CONNS:-64}"
BASE="http://127.0.0.1:$PORT"
KEEL_BIN="$CARGO_TARGET_DIR/release/keel"

# shellcheck source=scripts/bench-lib.sh
source "$REPO/scripts/bench-lib.sh"
bench_init bench-auth


# ---------------------------------------------------------------------------------------------
# Tools, build, services, keel
# ---------------------------------------------------------------------------------------------

bench_require_tools

bench_build

bench_start_services

bench_keel_vars KEEL_ARGON2_MEMORY_KIB KEEL_ARGON2_ITERATIONS KEEL_ARGON2_PARALLELISM \
    KEEL_ARGON2_MAX_CONCURRENT KEEL_WORKERS KEEL_DB_MAX_CONNECTIONS
log "starting keel on $BASE"
env "${KEEL_ENV_VARS[@]}" "$KEEL_BIN" >"$WORK/keel.log" 2>&1 &
KEEL_PID=$!
COMMANDS+=("$(show env "${KEEL_ENV_VARS[@]}") $(show "$KEEL_BIN") &")
bench_wait_healthy
log "keel is up (pid $KEEL_PID)"

proc_kib() { awk -v k="$1:" '$1 == k { print $2 }' "/proc/$KEEL_PID/status"; }

# ---------------------------------------------------------------------------------------------
# Users
# ---------------------------------------------------------------------------------------------

PASSWORD="Bench-passw0rd"
# POST $1 with body $2; prints the body, fails unless the status is $3.
post_json() {
    local status
    status="$(curl -sS -o "$WORK/post.out" -w '%{http_code}' -H 'content-type: application/json' \
        --data "$2" "$BASE$1")"
    [[ "$status" == "$3" ]] || die "POST $1 answered $status, expected $3: $(head -c 300 "$WORK/post.out")"
    cat "$WORK/post.out"
}
access_token() { sed -n 's/.*"accessToken":"\([^"]*\)".*/\1/p'; }

LOGIN_BODY="{\"email\":\"bench-login@example.com\",\"password\":\"$PASSWORD\"}"
post_json /api/v1/auth/register \
    "{\"email\":\"bench-login@example.com\",\"password\":\"$PASSWORD\",\"name\":\"Bench Login\"}" 201 >/dev/null
TOKEN="$(post_json /api/v1/auth/register \
    "{\"email\":\"bench-profile@example.com\",\"password\":\"$PASSWORD\",\"name\":\"Bench Profile\"}" 201 |
    access_token)"
[[ -n "$TOKEN" ]] || die "no accessToken in the register answer"
[[ "$(curl -sS -o /dev/null -w '%{http_code}' -H "authorization: Bearer $TOKEN" "$BASE/api/v1/auth/profile")" == 200 ]] ||
    die "GET /api/v1/auth/profile with the new token is not 200"
post_json /api/v1/auth/login "$LOGIN_BODY" 200 >/dev/null
log "registered bench-login@example.com and bench-profile@example.com"

# ---------------------------------------------------------------------------------------------
# wrk scripts: one per request shape, each with the same status counting and summary line
# ---------------------------------------------------------------------------------------------

write_stats_lua
{
    echo 'wrk.method = "POST"'
    echo 'wrk.headers["Content-Type"] = "application/json"'
    printf 'wrk.body = [[%s]]\n' "$LOGIN_BODY"
    cat "$WORK/stats.lua"
} >"$WORK/login.lua"
cp "$WORK/stats.lua" "$WORK/get.lua"
# The profile's bearer token lives in the script file, so the printed commands carry no secret.
{
    printf 'wrk.headers["Authorization"] = "Bearer %s"\n' "$TOKEN"
    cat "$WORK/stats.lua"
} >"$WORK/profile.lua"
# Paced: each connection waits 10 ms between answer and next request (an open-ish load of at
# most ~100 requests/s per connection), so "alone" and "during the flood" offer the same load.
{
    cat "$WORK/profile.lua"
    echo 'function delay() return 10 end'
} >"$WORK/profile-paced.lua"

# ---------------------------------------------------------------------------------------------
# Scenarios
# ---------------------------------------------------------------------------------------------

# row NAME LABEL NOTES: adds a table row from scenario NAME.
row() {
    local name="$1" label="$2" notes="$3" req dur rps errs sock
    req="$(field "$name" requests)"
    dur="$(field "$name" duration_us)"
    rps="$(awk -v r="$req" -v d="$dur" 'BEGIN { v = r / (d / 1e6); if (v < 100) printf "%.1f", v; else printf "%.0f", v }')"
    errs=$(($(field "$name" s503) + $(field "$name" other)))
    sock=$(($(field "$name" connect) + $(field "$name" read) + $(field "$name" write) + $(field "$name" timeout)))
    local err_text="$errs"
    if (($(field "$name" s503) > 0)); then err_text="$errs ($(field "$name" s503) × 503)"; fi
    if ((sock > 0)); then err_text="$err_text + $sock socket errors/timeouts"; fi
    ROWS+=("| $label | $rps | $(ms "$(field "$name" p50)") | $(ms "$(field "$name" p95)") | $(ms "$(field "$name" p99)") | $err_text | $notes ($req requests in $(awk -v d="$dur" 'BEGIN { printf "%.1f", d / 1e6 }') s; other processes $(cat "$WORK/$name.others")% CPU) |")
}

# mean_ms NAME METRIC LABELS: growth of METRIC_sum / growth of METRIC_count, in ms.
mean_ms() {
    awk -v s="$(delta "$1" "${2}_sum" "$3")" -v c="$(delta "$1" "${2}_count" "$3")" \
        'BEGIN { if (c > 0) printf "%.1f ms\n", s * 1000 / c; else print "?" }'
}
# db_per_answer NAME ROUTE: database statements per 2xx answer of ROUTE during scenario NAME,
# with the breakdown by statement kind and table, e.g. "3.00 (select/sessions 1.00, ...)".
db_per_answer() {
    local name="$1" route="$2" ok
    ok="$(delta "$name" http_requests_total "route=\"$route\",status_code=\"2")"
    ((ok > 0)) || {
        echo "?"
        return
    }
    local f
    for f in m0 m1; do
        awk 'index($0, "db_query_duration_seconds_count{") == 1 { print }' "$WORK/$name.$f" | LC_ALL=C sort >"$WORK/$name.db.$f"
    done
    LC_ALL=C join -a 2 -e 0 -o 0,1.2,2.2 "$WORK/$name.db.m0" "$WORK/$name.db.m1" |
        awk -v ok="$ok" '
            { d = $3 - $2; if (d <= 0) next; total += d
              op = $1; sub(/.*operation="/, "", op); sub(/".*/, "", op)
              tb = $1; sub(/.*table="/, "", tb); sub(/".*/, "", tb)
              parts = parts sep op "/" tb " " sprintf("%.2f", d / ok); sep = ", " }
            END { printf "%.2f (%s)\n", total / ok, parts }'
}

bench_wait_quiet

# Warm-up (pool connections, caches); not reported.
log "warm-up (3 s, not reported)"
wrk -t2 -c16 -d3s -s "$WORK/profile.lua" "$BASE/api/v1/auth/profile" >/dev/null 2>&1

RUN_T0="$(date +%s.%N)"
RUN_BUSY0="$(busy_ticks)"
RUN_OWN0="$(own_ticks)"
run_wrk health -t2 -c32 -d"${SHORT_SECS}s" --timeout 10s -s "$WORK/get.lua" "$BASE/health"
row health "GET /health, 32 connections" "closed loop, no database"

run_wrk profile -t2 -c32 -d"${SHORT_SECS}s" --timeout 10s -s "$WORK/profile.lua" "$BASE/api/v1/auth/profile"
row profile "GET /auth/profile alone, 32 connections" "closed loop, throughput"

run_wrk profile-paced -t1 -c4 -d"${SHORT_SECS}s" --timeout 10s -s "$WORK/profile-paced.lua" "$BASE/api/v1/auth/profile"
row profile-paced "GET /auth/profile alone, 4 connections paced 10 ms" "the baseline for the row under the flood"

run_wrk login-c1 -t1 -c1 -d"${LOGIN_SECS}s" --timeout 30s -s "$WORK/login.lua" "$BASE/api/v1/auth/login"
row login-c1 "POST /auth/login, 1 connection" "p50 ≈ one argon2id verify + the database round trips"

run_wrk login-c2 -t1 -c2 -d"${LOGIN_SECS}s" --timeout 30s -s "$WORK/login.lua" "$BASE/api/v1/auth/login"
row login-c2 "POST /auth/login, 2 connections" "= max concurrent hashes: throughput"

# The flood: FLOOD_CONNS logins and the paced profile reader at once, RSS sampled every 100 ms.
HWM_BEFORE_FLOOD="$(proc_kib VmHWM)"
RSS_BEFORE_FLOOD="$(proc_kib VmRSS)"
# Writing 5 to clear_refs resets VmHWM to the current RSS (Linux ≥ 4.0), so the VmHWM read
# after the flood is the flood's own peak.
HWM_RESET=0
if echo 5 >"/proc/$KEEL_PID/clear_refs" 2>/dev/null; then HWM_RESET=1; fi
metrics >"$WORK/flood.m0"
(
    max=0
    while kill -0 "$KEEL_PID" 2>/dev/null; do
        rss="$(awk '$1 == "VmRSS:" { print $2 }' "/proc/$KEEL_PID/status" 2>/dev/null || true)"
        if [[ -n "$rss" ]] && ((rss > max)); then
            max="$rss"
            echo "$max" >"$WORK/rss.max"
        fi
        sleep 0.1
    done
) &
SAMPLER_PID=$!
BG_PIDS+=("$SAMPLER_PID")
FLOOD_CMD=(-t2 -c"$FLOOD_CONNS" -d"${FLOOD_SECS}s" --timeout 30s -s "$WORK/login.lua" "$BASE/api/v1/auth/login")
COMMANDS+=("wrk $(show "${FLOOD_CMD[@]}") &   # the flood, in parallel with:")
log "flood: wrk $(show "${FLOOD_CMD[@]}") &"
mark flood
wrk "${FLOOD_CMD[@]}" >"$WORK/flood.out" 2>&1 &
FLOOD_PID=$!
BG_PIDS+=("$FLOOD_PID")
sleep 1 # let the queue fill before the reader starts
run_wrk profile-flood -t1 -c4 -d"$((FLOOD_SECS - 2))s" --timeout 10s -s "$WORK/profile-paced.lua" "$BASE/api/v1/auth/profile"
wait "$FLOOD_PID" || die "wrk failed in the flood: $(cat "$WORK/flood.out")"
others_pct flood
grep -q '^BENCH ' "$WORK/flood.out" || die "no BENCH line from the flood: $(cat "$WORK/flood.out")"
# Requests still queued when wrk hung up finish (or time out) within the 5 s queue timeout.
sleep 6
HWM_AFTER_FLOOD="$(proc_kib VmHWM)"
RSS_AFTER_FLOOD="$(proc_kib VmRSS)"
THREADS_AFTER_FLOOD="$(proc_kib Threads)"
kill -TERM "$SAMPLER_PID" 2>/dev/null || true
wait "$SAMPLER_PID" 2>/dev/null || true
RSS_MAX_SAMPLED="$(cat "$WORK/rss.max" 2>/dev/null || echo 0)"
metrics >"$WORK/flood.m1"

RUN_T1="$(date +%s.%N)"
RUN_BUSY1="$(busy_ticks)"
RUN_OWN1="$(own_ticks)"
OTHERS_DURING="$(awk -v d=$(((RUN_BUSY1 - RUN_BUSY0) - (RUN_OWN1 - RUN_OWN0))) -v s="$(awk -v a="$RUN_T0" -v b="$RUN_T1" 'BEGIN { print b - a }')" \
    -v t="$TICKS" -v n="$(nproc)" 'BEGIN { v = 100 * d / (s * t * n); if (v < 0) v = 0; printf "%.0f\n", v }')"

row flood "POST /auth/login flood, $FLOOD_CONNS connections" "latency of all answers, 200s and 503s alike"
row profile-flood "GET /auth/profile during the flood, 4 connections paced 10 ms" "same load as the paced row above"

# ---------------------------------------------------------------------------------------------
# Server-side cross-checks from /metrics
# ---------------------------------------------------------------------------------------------

FLOOD_SERVER_200="$(delta flood http_requests_total 'route="/api/v1/auth/login",status_code="200"')"
FLOOD_SERVER_503="$(delta flood http_requests_total 'route="/api/v1/auth/login",status_code="503"')"
LOGIN_LABEL='route="/api/v1/auth/login",status_code="200"'
LOGIN_SERVER_MS="$(mean_ms login-c1 http_request_duration_seconds "$LOGIN_LABEL")"
LOGIN_DB_MS="$(awk -v s="$(delta login-c1 db_query_duration_seconds_sum '')" -v c="$(delta login-c1 http_requests_total "$LOGIN_LABEL")" \
    'BEGIN { if (c > 0) printf "%.1f ms\n", s * 1000 / c; else print "?" }')"
HASH_MS="$(awk -v a="${LOGIN_SERVER_MS% ms}" -v b="${LOGIN_DB_MS% ms}" 'BEGIN { printf "%.0f ms\n", a - b }')"
FLOOD_200_MS="$(mean_ms flood http_request_duration_seconds "$LOGIN_LABEL")"
FLOOD_503_MS="$(mean_ms flood http_request_duration_seconds 'route="/api/v1/auth/login",status_code="503"')"

# ---------------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------------

mib() { awk -v k="$1" 'BEGIN { printf "%.1f MiB", k / 1024 }'; }
ARGON2_DESC="m=${KEEL_ARGON2_MEMORY_KIB:-65536} KiB, t=${KEEL_ARGON2_ITERATIONS:-3}, p=${KEEL_ARGON2_PARALLELISM:-4}, max concurrent ${KEEL_ARGON2_MAX_CONCURRENT:-$(( $(nproc) > 1 ? $(nproc) - 1 : 1 )) (default: CPUs - 1, at least 1)}"

echo "### keel identity benchmark ($(date -u '+%Y-%m-%d %H:%M UTC'), $BUILT_FROM)"
echo
echo "Machine: $(nproc) CPUs ($(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)), $(awk '$1 == "MemTotal:" { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo) RAM, Linux $(uname -r)"
echo "Tools: $(rustc --version 2>/dev/null || echo rustc ?), $(wrk -v 2>&1 | head -n 1 | cut -d' ' -f1-2), PostgreSQL $("${KEEL_PG_BIN:-/usr/lib/postgresql/15/bin}/postgres" --version 2>/dev/null | awk '{ print $3 }'), Redis $(redis-server --version | sed -n 's/.* v=\([^ ]*\).*/\1/p')"
echo "argon2id: $ARGON2_DESC; keel, PostgreSQL, Redis and wrk share the same machine"
echo "Other processes on the machine used ${OTHERS_BEFORE}% of its CPU time just before the scenarios and ${OTHERS_DURING}% during them (load average at the end: $(cut -d' ' -f1-3 /proc/loadavg))"
echo
echo "Commands:"
echo
echo '```'
for c in "${COMMANDS[@]}"; do echo "$c"; done
echo '```'
echo
echo "wrk scripts (written by the script): login.lua POSTs $LOGIN_BODY; profile.lua sends a bearer token of bench-profile@example.com; profile-paced.lua adds \`delay() = 10 ms\`; all count answers by status in \`response()\` and print wrk's own percentiles in \`done()\`."
echo
echo "| scenario | requests/s | p50 | p95 | p99 | errors (non-2xx) | notes |"
echo "|---|---:|---:|---:|---:|---|---|"
for r in "${ROWS[@]}"; do echo "$r"; done
echo
echo "argon2id verify at this cost, one at a time: ≈ $HASH_MS (login-c1: keel's mean time per 200 login $LOGIN_SERVER_MS, minus $LOGIN_DB_MS of database statements per login)."
MAX_CONC="${KEEL_ARGON2_MAX_CONCURRENT:-$(nproc)}"
echo "Login ceiling ≈ min(max concurrent hashes, CPUs) / verify time = $(awk -v c="$MAX_CONC" -v n="$(nproc)" -v h="${HASH_MS% ms}" 'BEGIN { if (c > n) c = n; printf "%d / %.3f s = %.1f", c, h / 1000, c * 1000 / h }') logins/s; measured $(awk -v r="$(field login-c2 requests)" -v d="$(field login-c2 duration_us)" 'BEGIN { printf "%.1f", r / (d / 1e6) }')/s with 2 connections and $(awk -v r="$(field flood ok)" -v d="$(field flood duration_us)" 'BEGIN { printf "%.1f", r / (d / 1e6) }') successful/s in the flood."
echo "Login flood: $(field flood ok) × 200 and $(field flood s503) × 503 seen by wrk; keel counted $FLOOD_SERVER_200 × 200 (mean $FLOOD_200_MS) and $FLOOD_SERVER_503 × 503 (mean $FLOOD_503_MS) on /auth/login, including the requests wrk had hung up on when it stopped, which keel still served."
if [[ "$HWM_RESET" == 1 ]]; then
    echo "Peak RSS during the flood: VmHWM $(mib "$HWM_AFTER_FLOOD") (reset to the current RSS, $(mib "$RSS_BEFORE_FLOOD"), just before the flood; highest VmRSS sampled every 100 ms: $(mib "$RSS_MAX_SAMPLED")); lifetime VmHWM before the flood $(mib "$HWM_BEFORE_FLOOD"); VmRSS $(mib "$RSS_AFTER_FLOOD") and $THREADS_AFTER_FLOOD threads 6 s after it."
else
    echo "Peak RSS: VmHWM $(mib "$HWM_AFTER_FLOOD") over the process's life (could not reset it before the flood; it was $(mib "$HWM_BEFORE_FLOOD") before); highest VmRSS sampled every 100 ms during the flood: $(mib "$RSS_MAX_SAMPLED"); VmRSS $(mib "$RSS_AFTER_FLOOD") and $THREADS_AFTER_FLOOD threads 6 s after it."
fi
echo "Database statements per 2xx answer, from keel's /metrics: GET /auth/profile $(db_per_answer profile /api/v1/auth/profile); POST /auth/login $(db_per_answer login-c1 /api/v1/auth/login)."
