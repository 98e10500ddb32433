# Shared by scripts/bench-auth.sh, bench-tasks.sh and bench-cache.sh (sourced, not run). The caller
# sets REPO, CARGO_TARGET_DIR, KEEL_BIN, BASE, PORT, PG_PORT and REDIS_PORT, then calls
# `bench_init <name>`.

# The run's state (a work directory, the private services' settings, the lists the report is
# built from), log/die, and the traps that clean everything up however the run ends.
bench_init() {
    BENCH_NAME="$1"
    WORK="$(mktemp -d "/tmp/keel-$BENCH_NAME.XXXXXX")"
    # A state directory of its own: scripts/services.sh stop removes it, and must not remove
    # the one `make services-up` or the integration tests use.
    SERVICES_ENV=(KEEL_SERVICES_DIR="$WORK/services" KEEL_PG_PORT="$PG_PORT" KEEL_REDIS_PORT="$REDIS_PORT")
    KEEL_PID=""
    SERVICES_STARTED=0
    BG_PIDS=()
    COMMANDS=()
    ROWS=()
    trap 'bench_finish $?' EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
}

# bench_keel_vars [VAR...]: sets KEEL_ENV_VARS, keel's environment for every benchmark: the
# private PostgreSQL (and Redis unless BENCH_NO_REDIS=1), a fixed JWT secret, limits so high
# that one load generator (one client) is never refused although the limiter runs on every
# request, warnings only; plus each named VAR that is set in the caller's environment.
bench_keel_vars() {
    local var
    KEEL_ENV_VARS=(
        KEEL_BIND="127.0.0.1:$PORT"
        DATABASE_URL="postgres://keel:keel@127.0.0.1:$PG_PORT/keel"
        KEEL_JWT_SECRET="bench-secret-bench-secret-bench-secret-0123456789"
        KEEL_RATE_LIMIT_LOGIN="1000000/1m"
        KEEL_RATE_LIMIT_ANON="1000000000/1m"
        KEEL_RATE_LIMIT_USER="1000000000/1m"
        RUST_LOG=warn
    )
    if [[ "${BENCH_NO_REDIS:-0}" != 1 ]]; then KEEL_ENV_VARS+=(REDIS_URL="redis://127.0.0.1:$REDIS_PORT"); fi
    for var in "$@"; do
        if [[ -n "${!var:-}" ]]; then KEEL_ENV_VARS+=("$var=${!var}"); fi
    done
}

log() { printf '%s: %s\n' "$BENCH_NAME" "$*" >&2; }
die() {
    log "error: $*"
    exit 1
}

# Stops keel if it runs: SIGTERM, up to 10 s for the graceful shutdown, then SIGKILL. Never
# fails (keel's exit status is not the caller's).
bench_stop_keel() {
    local i
    if [[ -n "$KEEL_PID" ]] && kill -0 "$KEEL_PID" 2>/dev/null; then
        log "stopping keel (pid $KEEL_PID)"
        kill -TERM "$KEEL_PID" 2>/dev/null
        for ((i = 0; i < 100; i++)); do
            kill -0 "$KEEL_PID" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$KEEL_PID" 2>/dev/null || true
        wait "$KEEL_PID" 2>/dev/null || true
    fi
    return 0
}

# Fails unless 127.0.0.1:$PORT is free; starts the private PostgreSQL + Redis
# (SERVICES_ENV) and sets PG_DIR, PG_POSTMASTER and REDIS_PID.
bench_start_services() {
    if (echo >"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then
        die "127.0.0.1:$PORT is already in use (set KEEL_BENCH_PORT)"
    fi
    SERVICES_STARTED=1
    env "${SERVICES_ENV[@]}" "$REPO/scripts/services.sh" start
    COMMANDS+=("$(show env "${SERVICES_ENV[@]}") scripts/services.sh start")
    PG_DIR="$(sed -n 's/^PG_DIR=//p' "$WORK/services/meta")"
    PG_POSTMASTER="$(head -n 1 "$PG_DIR/data/postmaster.pid")"
    REDIS_PID="$(head -n 1 "$WORK/services/redis/redis.pid")"
}

# Waits (30 s at most) until the keel started as KEEL_PID answers /health.
bench_wait_healthy() {
    local i
    for ((i = 0; ; i++)); do
        if curl -fsS -o /dev/null "$BASE/health" 2>/dev/null; then return 0; fi
        kill -0 "$KEEL_PID" 2>/dev/null || die "keel exited during start-up"
        ((i < 300)) || die "keel not healthy after 30 s"
        sleep 0.1
    done
}

# Waits (KEEL_BENCH_IDLE_WAIT_SECS, default 120) until other processes use at most 10 % of the
# CPUs over 5 s; sets OTHERS_BEFORE to the last share measured.
bench_wait_quiet() {
    local idle_wait="${KEEL_BENCH_IDLE_WAIT_SECS:-120}" waited
    OTHERS_BEFORE="$(others_pct_now 5)"
    for ((waited = 5; OTHERS_BEFORE > 10 && waited < idle_wait; waited += 5)); do
        log "other processes use ${OTHERS_BEFORE}% of the CPUs; waiting for a quieter machine (${waited}/${idle_wait} s)"
        OTHERS_BEFORE="$(others_pct_now 5)"
    done
    ((OTHERS_BEFORE <= 10)) || log "warning: other processes still use ${OTHERS_BEFORE}% of the CPUs; the figures will show it"
}

# The end of every run, whatever happened: keel and the private services stopped, keel's last
# log lines shown on failure, the work directory removed, exit with `rc`.
bench_finish() {
    local rc=$1 pid
    set +e
    for pid in "${BG_PIDS[@]}"; do
        kill -TERM "$pid" 2>/dev/null
    done
    for pid in "${BG_PIDS[@]}"; do
        wait "$pid" 2>/dev/null
    done
    bench_stop_keel
    if [[ "$SERVICES_STARTED" == 1 ]]; then
        env "${SERVICES_ENV[@]}" "$REPO/scripts/services.sh" stop
    fi
    if ((rc != 0)) && [[ -f "$WORK/keel.log" ]]; then
        log "last lines of keel's log:"
        tail -n 30 "$WORK/keel.log" >&2
    fi
    rm -rf "$WORK"
    exit "$rc"
}

# Prints a command line, shell-quoted, with $WORK shown as <work>.
show() {
    local q
    q="$(printf '%q ' "$@")"
    q="${q% }"
    printf '%s' "${q//"$WORK"/<work>}"
}

# Installs wrk (apt) when missing, and checks for curl.
bench_require_tools() {
    if ! command -v wrk >/dev/null 2>&1; then
        log "wrk not found: apt-get install wrk"
        if [[ "$(id -u)" == 0 ]]; then
            DEBIAN_FRONTEND=noninteractive apt-get update -qq </dev/null
            DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk </dev/null >&2
        else
            sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq </dev/null
            sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk </dev/null >&2
        fi
    fi
    command -v curl >/dev/null 2>&1 || die "curl is required"
}

# Builds the release binary (unless KEEL_BENCH_SKIP_BUILD=1) and sets BUILT_FROM: the commit,
# and whether uncommitted changes went into the build.
bench_build() {
    local build_cmd=(cargo build --release --locked -p keel-api --bin keel)
    if [[ "${KEEL_BENCH_SKIP_BUILD:-0}" != 1 ]]; then
        log "building: CARGO_TARGET_DIR=$CARGO_TARGET_DIR $(show "${build_cmd[@]}")"
        (cd "$REPO" && "${build_cmd[@]}") >&2
    fi
    [[ -x "$KEEL_BIN" ]] || die "$KEEL_BIN not found (build failed or KEEL_BENCH_SKIP_BUILD=1 without a build)"
    COMMANDS+=("CARGO_TARGET_DIR=$CARGO_TARGET_DIR $(show "${build_cmd[@]}")")
    BUILT_FROM="commit $(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo unknown)"
    if ! git -C "$REPO" diff --quiet HEAD -- crates migration Cargo.toml Cargo.lock 2>/dev/null ||
        [[ -n "$(git -C "$REPO" ls-files --others --exclude-standard -- crates migration 2>/dev/null)" ]]; then
        BUILT_FROM="$BUILT_FROM, built with uncommitted changes in crates/, migration/ or Cargo.*"
    fi
}

# ---------------------------------------------------------------------------------------------
# Measuring (the caller sets BASE, WORK, KEEL_PID, PG_POSTMASTER and REDIS_PID)
# ---------------------------------------------------------------------------------------------

# CPU time, in clock ticks: the whole machine's busy time, and what the benchmark's own
# processes used (keel; PostgreSQL's postmaster with its reaped and live backends; Redis; the
# calling shell with every child it has waited for, wrk included). The rest was used by other
# processes on the machine and disturbs the figures.
TICKS="$(getconf CLK_TCK)"
busy_ticks() { awk '$1 == "cpu" { print $2 + $3 + $4 + $7 + $8 + $9 }' /proc/stat; }
pid_ticks() { sed 's/^.*) //' "/proc/$1/stat" 2>/dev/null | awk '{ print $12 + $13 + $14 + $15 }'; }
own_ticks() {
    local total=0 pid t
    for pid in "$KEEL_PID" "$PG_POSTMASTER" "$REDIS_PID" $$ $(pgrep -P "$PG_POSTMASTER" || true); do
        t="$(pid_ticks "$pid")"
        total=$((total + ${t:-0}))
    done
    echo "$total"
}
# Share of the machine (percent) that other processes used over $1 seconds, right now.
others_pct_now() {
    local b0 o0 b1 o1
    b0="$(busy_ticks)" o0="$(own_ticks)"
    sleep "$1"
    b1="$(busy_ticks)" o1="$(own_ticks)"
    awk -v d=$(((b1 - b0) - (o1 - o0))) -v s="$1" -v t="$TICKS" -v n="$(nproc)" \
        'BEGIN { v = 100 * d / (s * t * n); if (v < 0) v = 0; printf "%.0f\n", v }'
}
# mark NAME / others_pct NAME: the share of the CPUs other processes used between the two.
mark() { echo "$(date +%s.%N) $(busy_ticks) $(own_ticks)" >"$WORK/$1.cpu0"; }
others_pct() {
    local t0 b0 o0 t1 b1 o1
    read -r t0 b0 o0 <"$WORK/$1.cpu0"
    t1="$(date +%s.%N)" b1="$(busy_ticks)" o1="$(own_ticks)"
    awk -v d=$(((b1 - b0) - (o1 - o0))) -v s="$(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }')" \
        -v t="$TICKS" -v n="$(nproc)" 'BEGIN { v = 100 * d / (s * t * n); if (v < 0) v = 0; printf "%.0f\n", v }' >"$WORK/$1.others"
}

# keel's /metrics (nothing while NO_METRICS is set: a server without them is measured).
metrics() { if [[ -n "${NO_METRICS:-}" ]]; then echo; else curl -fsS "$BASE/metrics"; fi; }
# Sums the samples of metric $1 whose labels contain $2 (a fixed string; empty: all).
metric_sum() {
    awk -v m="$1" -v l="$2" 'index($0, m "{") == 1 && (l == "" || index($0, l)) { s += $NF } END { printf "%.6f\n", s }'
}
# delta NAME METRIC LABELS: the metric's growth over scenario NAME (an integer for counters).
delta() {
    awk -v a="$(metric_sum "$2" "$3" <"$WORK/$1.m0")" -v b="$(metric_sum "$2" "$3" <"$WORK/$1.m1")" \
        'BEGIN { d = b - a; if (d == int(d)) printf "%d\n", d; else printf "%.6f\n", d }'
}
# field NAME KEY: one value from the BENCH line of scenario NAME.
field() { sed -n "s/^BENCH .*\b$2=\([0-9]*\).*/\1/p" "$WORK/$1.out"; }
ms() { awk -v us="$1" 'BEGIN { v = us / 1000; if (v < 10) printf "%.2f ms", v; else if (v < 1000) printf "%.1f ms", v; else printf "%.2f s", v / 1000 }'; }

# run_wrk NAME ARGS...: runs wrk, keeps its output in $WORK/NAME.out and keel's /metrics before
# and after in $WORK/NAME.m0 and .m1 and the other processes' CPU share, records the command.
run_wrk() {
    local name="$1"
    shift
    COMMANDS+=("wrk $(show "$@")")
    log "$name: wrk $(show "$@")"
    metrics >"$WORK/$name.m0"
    mark "$name"
    wrk "$@" >"$WORK/$name.out" 2>&1 || {
        cat "$WORK/$name.out" >&2
        die "wrk failed in $name"
    }
    others_pct "$name"
    sleep 1 # a request in flight when wrk stopped finishes before the snapshot
    metrics >"$WORK/$name.m1"
    grep -q '^BENCH ' "$WORK/$name.out" || {
        cat "$WORK/$name.out" >&2
        die "no BENCH line from wrk in $name"
    }
}

# Writes $WORK/stats.lua: counts answers by class per thread and prints one BENCH line with
# wrk's percentiles (microseconds; wrk records the latency of every answer, whatever its status).
write_stats_lua() {
    cat >"$WORK/stats.lua" <<'LUA'
local threads = {}
function setup(thread) table.insert(threads, thread) end
function init(args) ok, s503, other = 0, 0, 0 end
function response(status, headers, body)
    if status >= 200 and status < 300 then ok = ok + 1
    elseif status == 503 then s503 = s503 + 1
    else other = other + 1 end
end
function done(summary, latency, requests)
    local o, u, x = 0, 0, 0
    for _, t in ipairs(threads) do
        o = o + t:get("ok"); u = u + t:get("s503"); x = x + t:get("other")
    end
    local e = summary.errors
    io.write(string.format(
        "BENCH requests=%d duration_us=%d p50=%d p95=%d p99=%d max=%d ok=%d s503=%d other=%d " ..
        "connect=%d read=%d write=%d timeout=%d\n",
        summary.requests, summary.duration, latency:percentile(50), latency:percentile(95),
        latency:percentile(99), latency.max, o, u, x, e.connect, e.read, e.write, e.timeout))
end
LUA
}
