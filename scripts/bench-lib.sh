# shellcheck shell=bash disable=SC2034,SC2153
# (Sourced: the variables it sets are the callers', and the callers set KEEL_BIN & co.)
# Shared by scripts/bench.sh, bench-auth.sh, bench-tasks.sh and bench-cache.sh (sourced, not
# run). The caller sets REPO, CARGO_TARGET_DIR, KEEL_BIN, BASE, PORT, PG_PORT and REDIS_PORT,
# then calls `bench_init <name>`.

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
    # Servers besides KEEL_PID (a second keel, the bare handler): stopped like keel on exit,
    # and counted as the benchmark's own CPU time.
    SERVER_PIDS=()
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
# shellcheck source=scripts/server-lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/server-lib.sh"

# bench_stop_pid PID [WHAT]: stops a server this script started, if it runs: SIGTERM, up to
# 10 s for the graceful shutdown, then SIGKILL. Never fails (its exit status is not the
# caller's).
bench_stop_pid() {
    local pid="$1" what="${2:-pid}"
    if [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null; then
        log "stopping $what (pid $pid)"
        stop_pid "$pid"
    fi
    return 0
}

# Stops keel (KEEL_PID) if it runs; never fails.
bench_stop_keel() { bench_stop_pid "$KEEL_PID" keel; }

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
bench_wait_healthy() { wait_healthy "$KEEL_PID" "$BASE/health" 30; }

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
# log lines shown on failure, the work directory removed (kept with BENCH_KEEP_WORK=1: logs,
# wrk scripts and outputs, for debugging), exit with `rc`.
bench_finish() {
    local rc=$1 pid
    set +e
    for pid in "${BG_PIDS[@]}"; do
        kill -TERM "$pid" 2>/dev/null
    done
    for pid in "${BG_PIDS[@]}"; do
        wait "$pid" 2>/dev/null
    done
    for pid in "${SERVER_PIDS[@]}"; do
        bench_stop_pid "$pid" server
    done
    bench_stop_keel
    if [[ "$SERVICES_STARTED" == 1 ]]; then
        env "${SERVICES_ENV[@]}" "$REPO/scripts/services.sh" stop
    fi
    if ((rc != 0)) && [[ -f "$WORK/keel.log" ]]; then
        log "last lines of keel's log:"
        tail -n 30 "$WORK/keel.log" >&2
    fi
    if ((rc != 0)) && [[ -s "$WORK/peer.log" ]]; then
        log "last lines of the peer's log:"
        tail -n 20 "$WORK/peer.log" >&2
    fi
    if [[ "${BENCH_KEEP_WORK:-0}" == 1 ]]; then
        log "kept the work directory (BENCH_KEEP_WORK=1): $WORK"
    else
        rm -rf "$WORK"
    fi
    exit "$rc"
}

# bg_forget PID: drops a background process that has been waited for from BG_PIDS, so that the
# exit trap never signals a process id the system may have given to another process since.
bg_forget() {
    local keep=() p
    for p in "${BG_PIDS[@]}"; do
        if [[ "$p" != "$1" ]]; then keep+=("$p"); fi
    done
    BG_PIDS=(${keep[@]+"${keep[@]}"})
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
    for pid in "$KEEL_PID" "${SERVER_PIDS[@]}" "$PG_POSTMASTER" "$REDIS_PID" $$ $(pgrep -P "$PG_POSTMASTER" || true); do
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
    # In the background and waited for: a signal to this script then runs the exit trap at
    # once (bash defers traps while a foreground child runs), and the trap stops wrk.
    local pid rc=0
    wrk "$@" >"$WORK/$name.out" 2>&1 &
    pid=$!
    BG_PIDS+=("$pid")
    wait "$pid" || rc=$?
    bg_forget "$pid"
    ((rc == 0)) || {
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
# ok = 2xx, s503 = 503, other = any other status; s3xx/s4xx/s5xx count by class, s408/s429
# single statuses (s4xx includes them, s5xx includes s503); codes = every non-2xx status with its
# count, e.g. codes=408:12,503:3 (empty when none). A script that prepends its own
# code may define init_hook(args), called by init(); each thread gets a global `tid` (1, 2, …).
write_stats_lua() {
    cat >"$WORK/stats.lua" <<'LUA'
local threads = {}
function setup(thread)
    table.insert(threads, thread)
    thread:set("tid", #threads)
end
function init(args)
    ok, s503, other, s3xx, s4xx, s408, s429, s5xx = 0, 0, 0, 0, 0, 0, 0, 0
    codes = {}
    if init_hook then init_hook(args) end
end
function response(status, headers, body)
    if status < 200 or status >= 300 then codes[status] = (codes[status] or 0) + 1 end
    if status >= 200 and status < 300 then ok = ok + 1
    elseif status == 503 then s503 = s503 + 1
    else other = other + 1 end
    if status >= 300 and status < 400 then s3xx = s3xx + 1
    elseif status >= 400 and status < 500 then s4xx = s4xx + 1
    elseif status >= 500 then s5xx = s5xx + 1 end
    if status == 408 then s408 = s408 + 1 elseif status == 429 then s429 = s429 + 1 end
end
function done(summary, latency, requests)
    local c = { ok = 0, s503 = 0, other = 0, s3xx = 0, s4xx = 0, s408 = 0, s429 = 0, s5xx = 0 }
    local all, list = {}, {}
    for _, t in ipairs(threads) do
        for k, _ in pairs(c) do c[k] = c[k] + t:get(k) end
        for code, n in pairs(t:get("codes") or {}) do all[code] = (all[code] or 0) + n end
    end
    for code, n in pairs(all) do table.insert(list, code .. ":" .. n) end
    table.sort(list)
    local e = summary.errors
    io.write(string.format(
        "BENCH requests=%d duration_us=%d p50=%d p95=%d p99=%d max=%d ok=%d s503=%d other=%d " ..
        "connect=%d read=%d write=%d timeout=%d s3xx=%d s4xx=%d s408=%d s429=%d s5xx=%d codes=%s\n",
        summary.requests, summary.duration, latency:percentile(50), latency:percentile(95),
        latency:percentile(99), latency.max, c.ok, c.s503, c.other, e.connect, e.read, e.write,
        e.timeout, c.s3xx, c.s4xx, c.s408, c.s429, c.s5xx, table.concat(list, ",")))
end
LUA
}

# ---------------------------------------------------------------------------------------------
# More set-up and measuring, shared since scripts/bench.sh (the one-table run)
# ---------------------------------------------------------------------------------------------

# bench_raise_nofile NEED: raises this shell's open-file limit (keel, the bare handler and wrk
# inherit it) to 65536 or the hard limit, whichever is lower; fails when that is below NEED.
# Sets NOFILE (the limit now) and NOFILE_HARD.
bench_raise_nofile() {
    local need="$1" want=65536
    NOFILE_HARD="$(ulimit -Hn)"
    if [[ "$NOFILE_HARD" != unlimited ]] && ((NOFILE_HARD < want)); then want="$NOFILE_HARD"; fi
    ulimit -n "$want" || die "cannot raise the open-file limit to $want"
    NOFILE="$(ulimit -n)"
    ((NOFILE >= need)) ||
        die "the open-file limit is $NOFILE (hard limit $NOFILE_HARD), below the $need this run needs; raise the hard limit (limits.conf, LimitNOFILE=, or a root shell's ulimit -Hn)"
}

# Builds the bare actix-web handler (crates/api/examples/bare.rs) unless
# KEEL_BENCH_SKIP_BUILD=1, records the command; sets BARE_BIN.
bench_build_bare() {
    local build_cmd=(cargo build --release --locked -p keel-api --example bare)
    BARE_BIN="$CARGO_TARGET_DIR/release/examples/bare"
    if [[ "${KEEL_BENCH_SKIP_BUILD:-0}" != 1 ]]; then
        log "building: CARGO_TARGET_DIR=$CARGO_TARGET_DIR $(show "${build_cmd[@]}")"
        (cd "$REPO" && "${build_cmd[@]}") >&2
    fi
    [[ -x "$BARE_BIN" ]] || die "$BARE_BIN not found (build failed or KEEL_BENCH_SKIP_BUILD=1 without a build)"
    COMMANDS+=("CARGO_TARGET_DIR=$CARGO_TARGET_DIR $(show "${build_cmd[@]}")")
}

# Builds the one-statement read, reference (b) (crates/api/examples/one_statement.rs), unless
# KEEL_BENCH_SKIP_BUILD=1, records the command; sets ONE_BIN.
bench_build_one_statement() {
    local build_cmd=(cargo build --release --locked -p keel-api --example one_statement)
    ONE_BIN="$CARGO_TARGET_DIR/release/examples/one_statement"
    if [[ "${KEEL_BENCH_SKIP_BUILD:-0}" != 1 ]]; then
        log "building: CARGO_TARGET_DIR=$CARGO_TARGET_DIR $(show "${build_cmd[@]}")"
        (cd "$REPO" && "${build_cmd[@]}") >&2
    fi
    [[ -x "$ONE_BIN" ]] || die "$ONE_BIN not found (build failed or KEEL_BENCH_SKIP_BUILD=1 without a build)"
    COMMANDS+=("CARGO_TARGET_DIR=$CARGO_TARGET_DIR $(show "${build_cmd[@]}")")
}

# bench_wait_url URL PID WHAT: waits (30 s at most) until URL answers 2xx; fails if PID exits.
bench_wait_url() {
    local i
    for ((i = 0; ; i++)); do
        if curl -fsS -o /dev/null "$1" 2>/dev/null; then return 0; fi
        kill -0 "$2" 2>/dev/null || die "$3 exited during start-up"
        ((i < 300)) || die "$3 does not answer $1 after 30 s"
        sleep 0.1
    done
}

# pid_kib PID KEY: a value in KiB (or a count) from /proc/PID/status, e.g. VmHWM, VmRSS, Threads.
pid_kib() { awk -v k="$2:" '$1 == k { print $2 }' "/proc/$1/status" 2>/dev/null; }
mib() { awk -v k="$1" 'BEGIN { if (k == "") print "?"; else printf "%.1f MiB", k / 1024 }'; }

# hwm_reset PID: resets VmHWM to the current RSS (writing 5 to clear_refs, Linux ≥ 4.0), so the
# VmHWM read later is the peak since now. Fails when the kernel refuses.
hwm_reset() { echo 5 2>/dev/null >"/proc/$1/clear_refs"; }

# rss_sampler_start NAME PID: samples PID's VmRSS every 100 ms in the background and keeps the
# highest in $WORK/NAME.rssmax; sets SAMPLER_PID (stop it with rss_sampler_stop).
rss_sampler_start() {
    local name="$1" pid="$2"
    echo 0 >"$WORK/$name.rssmax"
    (
        max=0
        while kill -0 "$pid" 2>/dev/null; do
            rss="$(pid_kib "$pid" VmRSS || true)"
            if [[ -n "$rss" ]] && ((rss > max)); then
                max="$rss"
                echo "$max" >"$WORK/$name.rssmax"
            fi
            sleep 0.1
        done
    ) &
    SAMPLER_PID=$!
    BG_PIDS+=("$SAMPLER_PID")
}
rss_sampler_stop() {
    kill -TERM "$SAMPLER_PID" 2>/dev/null || true
    wait "$SAMPLER_PID" 2>/dev/null || true
    bg_forget "$SAMPLER_PID"
}

# bench_seed NAME ARGS...: runs `keel dev seed ARGS...` with keel's environment (KEEL_ENV_VARS,
# then SEED_EXTRA_ENV if set); its output goes to $WORK/NAME.seed (and to stderr unless
# SEED_QUIET=1), its duration in seconds to SEED_SECS. Fails with the seed's last lines.
bench_seed() {
    local name="$1" t0
    shift
    t0="$(date +%s.%N)"
    if [[ "${SEED_QUIET:-0}" == 1 ]]; then
        env "${KEEL_ENV_VARS[@]}" ${SEED_EXTRA_ENV[@]+"${SEED_EXTRA_ENV[@]}"} "$KEEL_BIN" dev seed "$@" \
            >"$WORK/$name.seed" 2>"$WORK/$name.seed.err" ||
            die "keel dev seed $* failed: $(tail -n 5 "$WORK/$name.seed.err")"
    else
        env "${KEEL_ENV_VARS[@]}" ${SEED_EXTRA_ENV[@]+"${SEED_EXTRA_ENV[@]}"} "$KEEL_BIN" dev seed "$@" \
            2>"$WORK/$name.seed.err" | tee "$WORK/$name.seed" >&2 ||
            die "keel dev seed $* failed: $(tail -n 5 "$WORK/$name.seed.err")"
    fi
    SEED_SECS="$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.0f", b - a }')"
}
# seed_project_id NAME / seed_member_id NAME I: ids from the output of bench_seed NAME.
seed_project_id() { sed -n 's/^project [A-Z0-9]* (\([0-9a-f-]*\)).*/\1/p' "$WORK/$1.seed"; }
seed_member_id() { sed -n "s/^member seed-member-$2@[^ ]* (\([0-9a-f-]*\)).*/\1/p" "$WORK/$1.seed"; }

# bench_walk NAME URL PAGES HEADER: follows nextCursor PAGES times from URL (a list's first page,
# with its query string), one curl at a time with HEADER (e.g. the bearer token); leaves the
# cursor of page PAGES + 1 in $WORK/NAME.cursor and the mean time per page (curl's time_total)
# of the walk's first and last tenth in $WORK/NAME.walk.
bench_walk() {
    local name="$1" url="$2" pages="$3" header="$4" cursor="" page tenth t first=0 last=0 sep='?'
    tenth=$(((pages + 9) / 10))
    [[ "$url" == *\?* ]] && sep='&'
    for ((page = 1; page <= pages; page++)); do
        t="$(curl -sS -o "$WORK/page.json" -w '%{http_code} %{time_total}' -H "$header" \
            "$url${cursor:+${sep}cursor=$cursor}")"
        [[ "${t%% *}" == 200 ]] || die "$name: page $page answered ${t%% *}: $(head -c 300 "$WORK/page.json")"
        if ((page <= tenth)); then first="$(awk -v a="$first" -v b="${t#* }" 'BEGIN { print a + b }')"; fi
        if ((page > pages - tenth)); then last="$(awk -v a="$last" -v b="${t#* }" 'BEGIN { print a + b }')"; fi
        cursor="$(sed -n 's/.*"nextCursor":"\([^"]*\)".*/\1/p' "$WORK/page.json")"
        [[ -n "$cursor" ]] || die "$name: the list ended at page $page"
    done
    awk -v a="$first" -v b="$last" -v n="$tenth" -v p="$pages" \
        'BEGIN { printf "%.1f ms per page over pages 1–%d, %.1f ms over pages %d–%d\n", a * 1000 / n, n, b * 1000 / n, p - n + 1, p }' \
        >"$WORK/$name.walk"
    echo "$cursor" >"$WORK/$name.cursor"
}

# The report's first lines: the machine, and the versions of the tools.
bench_machine() {
    echo "$(nproc) CPUs ($(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)), $(awk '$1 == "MemTotal:" { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo) RAM, Linux $(uname -r)"
}
bench_tools() {
    echo "$(rustc --version 2>/dev/null || echo rustc ?), $(wrk -v 2>&1 | head -n 1 | cut -d' ' -f1-2), PostgreSQL $("${KEEL_PG_BIN:-/usr/lib/postgresql/15/bin}/postgres" --version 2>/dev/null | awk '{ print $3 }'), Redis $(redis-server --version | sed -n 's/.* v=\([^ ]*\).*/\1/p'), curl $(curl --version | head -n 1 | cut -d' ' -f2)"
}

# rps NAME: answers per second of scenario NAME (wrk's requests over its duration).
rps() {
    awk -v r="$(field "$1" requests)" -v d="$(field "$1" duration_us)" \
        'BEGIN { if (d <= 0) { print "?"; exit } v = r / (d / 1e6); if (v < 100) printf "%.1f\n", v; else printf "%.0f\n", v }'
}
# errors_text NAME: every answer that is not 2xx plus wrk's socket errors, with a breakdown,
# e.g. "0" or "12 (9 × 429, 3 × 503)" or "0 + 5 socket errors (read 5)".
errors_text() {
    local name="$1" non2xx sock text detail="" k v
    non2xx=$(($(field "$name" s503) + $(field "$name" other)))
    sock=$(($(field "$name" connect) + $(field "$name" read) + $(field "$name" write) + $(field "$name" timeout)))
    text="$non2xx"
    if ((non2xx > 0)); then
        detail="$(sed -n 's/^BENCH .*\bcodes=\([0-9:,]*\).*/\1/p' "$WORK/$name.out" |
            awk -F, '{ for (i = 1; i <= NF; i++) { split($i, p, ":"); printf "%s%s × %s", (i > 1 ? ", " : ""), p[2], p[1] } }')"
        text="$text ($detail)"
    fi
    if ((sock > 0)); then
        detail=""
        for k in connect read write timeout; do
            v="$(field "$name" "$k")"
            if ((v > 0)); then detail="$detail${detail:+, }$k $v"; fi
        done
        text="$text + $sock socket errors ($detail)"
    fi
    echo "$text"
}
errors_total() {
    echo $(($(field "$1" s503) + $(field "$1" other) + $(field "$1" connect) + $(field "$1" read) + $(field "$1" write) + $(field "$1" timeout)))
}
# hit_rate NAME: the cache's hit rate over scenario NAME from keel's /metrics: hits in L1 or L2
# over look-ups (L1 hits + L1 misses; with L1 off, L2 look-ups); "—" when nothing was looked up.
hit_rate() {
    awk -v h1="$(delta "$1" cache_hits_total 'cache_layer="l1"')" -v m1="$(delta "$1" cache_misses_total 'cache_layer="l1"')" \
        -v h2="$(delta "$1" cache_hits_total 'cache_layer="l2"')" -v m2="$(delta "$1" cache_misses_total 'cache_layer="l2"')" \
        'BEGIN { n = h1 + m1; if (n == 0) n = h2 + m2; if (n == 0) print "—"; else printf "%.1f %%\n", 100 * (h1 + h2) / n }'
}

# ---------------------------------------------------------------------------------------------
# The peer (scripts/bench.sh with BENCH_PEER=1): a Loco 1.2 application, what a user would pick
# instead of Keel for a Rust API on SeaORM. Nothing of it is in the repository: it is generated
# and built here, once, into BENCH_PEER_DIR (default ~/.cache/keel-bench-peer), and reused.
# ---------------------------------------------------------------------------------------------

PEER_LOCO_VERSION=1.2.0
PEER_SEA_ORM_CLI_VERSION=2.0.4
# A fixed JWT secret for the peer (base64 of 32 bytes): the tokens never leave the machine.
PEER_JWT_SECRET="YmVuY2gtcGVlci1qd3Qtc2VjcmV0LTAxMjM0NTY3ODk="

# peer_step WHAT CMD...: one build step, its output appended to $PEER_DIR/build.log, at nice 19
# (about 25 minutes of CPU in all on 2 cores: the machine stays usable); fails with its last
# lines.
peer_step() {
    local what="$1"
    shift
    log "the peer: $what"
    COMMANDS+=("$(show "$@")   # the peer: $what")
    echo "### $what: $*" >>"$PEER_DIR/build.log"
    nice -n 19 "$@" </dev/null >>"$PEER_DIR/build.log" 2>&1 || {
        tail -n 40 "$PEER_DIR/build.log" >&2
        die "the peer: $what failed (log: $PEER_DIR/build.log)"
    }
}

# bench_peer_build ADMIN_URL: builds the peer unless $PEER_DIR/built says it is (delete the
# folder to rebuild). ADMIN_URL (postgres://user:pass@host:port, no database) is a PostgreSQL
# the scaffold generator may use: it migrates a scratch database and generates the entity from
# it. Sets PEER_DIR and PEER_BIN. Steps, each skipped when already done:
#   1. cargo install loco 1.2.0 and sea-orm-cli 2.0.4 into $PEER_DIR/tools;
#   2. loco new --name app --db postgres --bg async --assets none into $PEER_DIR/app;
#   3. cargo loco generate scaffold project 'name:string!' description:text status:string --api;
#   4. cargo build --release (target directory $PEER_DIR/target).
bench_peer_build() {
    local admin_url="$1" tools app target
    PEER_DIR="${BENCH_PEER_DIR:-$HOME/.cache/keel-bench-peer}"
    tools="$PEER_DIR/tools"
    app="$PEER_DIR/app"
    target="$PEER_DIR/target"
    PEER_BIN="$target/release/app-cli"
    if [[ -x "$PEER_BIN" && "$(cat "$PEER_DIR/built" 2>/dev/null)" == "loco $PEER_LOCO_VERSION" ]]; then
        log "the peer: reusing $PEER_BIN (built earlier; remove $PEER_DIR to rebuild)"
        COMMANDS+=("# the peer: Loco $PEER_LOCO_VERSION, built earlier into $PEER_DIR (reused)")
        return 0
    fi
    mkdir -p "$PEER_DIR"
    log "the peer: building Loco $PEER_LOCO_VERSION into $PEER_DIR (once; about 25 minutes of CPU at nice 19; log: $PEER_DIR/build.log)"
    if [[ ! -x "$tools/bin/loco" ]]; then
        peer_step "cargo install loco" env CARGO_TARGET_DIR="$PEER_DIR/tools-target" \
            cargo install loco --version "$PEER_LOCO_VERSION" --locked --root "$tools"
    fi
    if [[ ! -x "$tools/bin/sea-orm-cli" ]]; then
        peer_step "cargo install sea-orm-cli" env CARGO_TARGET_DIR="$PEER_DIR/tools-target" \
            cargo install sea-orm-cli --version "$PEER_SEA_ORM_CLI_VERSION" --locked --root "$tools"
    fi
    if [[ ! -f "$PEER_DIR/scaffolded" ]]; then
        # A half-generated application is started again from scratch.
        rm -rf "$app"
        peer_step "loco new" "$tools/bin/loco" new --path "$PEER_DIR" --name app --db postgres \
            --bg async --assets none --allow-in-git-repo
        "$PSQL_BIN" -X -q -v ON_ERROR_STOP=1 -d "$admin_url/postgres" \
            -c "DROP DATABASE IF EXISTS peer_scaffold" -c "CREATE DATABASE peer_scaffold" >/dev/null ||
            die "the peer: cannot create the scaffold's database"
        # `cargo loco` is `cargo run --`: Loco's generators exist only in a debug build
        # (cfg(debug_assertions)), so this is a second build of the dependencies; without
        # debug information, which it does not need.
        peer_step "cargo loco generate scaffold" env -C "$app" PATH="$tools/bin:$PATH" \
            DATABASE_URL="$admin_url/peer_scaffold" CARGO_TARGET_DIR="$target" CARGO_PROFILE_DEV_DEBUG=0 \
            cargo loco generate scaffold project 'name:string!' description:text status:string --api
        touch "$PEER_DIR/scaffolded"
    fi
    peer_step "cargo build --release" env -C "$app" CARGO_TARGET_DIR="$target" cargo build --release
    [[ -x "$PEER_BIN" ]] || die "the peer: $PEER_BIN not found after its build"
    echo "loco $PEER_LOCO_VERSION" >"$PEER_DIR/built"
}

# bench_peer_start ADMIN_URL PORT: the peer as in production (LOCO_ENV=production: JSON logs at
# info, migrations on start) on a fresh database `peer` of ADMIN_URL, keel's pool size
# (KEEL_DB_MAX_CONNECTIONS, default 10), listening on 127.0.0.1:PORT; sets PEER_PID (a server:
# stopped on exit), PEER_DB, PEER_POOL. Its welcome mail fails harmlessly (no SMTP server; it
# is sent in the background).
bench_peer_start() {
    local admin_url="$1" port="$2"
    PEER_DB=peer
    PEER_POOL="${KEEL_DB_MAX_CONNECTIONS:-10}"
    "$PSQL_BIN" -X -q -v ON_ERROR_STOP=1 -d "$admin_url/postgres" \
        -c "DROP DATABASE IF EXISTS $PEER_DB" -c "CREATE DATABASE $PEER_DB" >/dev/null ||
        die "the peer: cannot create its database"
    PEER_VARS=(LOCO_ENV=production DATABASE_URL="$admin_url/$PEER_DB" DB_MAX_CONNECTIONS="$PEER_POOL"
        PORT="$port" BINDING=127.0.0.1 HOST="http://127.0.0.1:$port" JWT_SECRET="$PEER_JWT_SECRET"
        MAILER_HOST=127.0.0.1 MAILER_PORT=1 MAILER_USER=bench MAILER_PASSWORD=bench)
    log "the peer: starting on 127.0.0.1:$port"
    (cd "$PEER_DIR/app" && exec env "${PEER_VARS[@]}" "$PEER_BIN" start) >"$WORK/peer.log" 2>&1 &
    PEER_PID=$!
    SERVER_PIDS+=("$PEER_PID")
    COMMANDS+=("(cd $PEER_DIR/app && $(show env "${PEER_VARS[@]}" "$PEER_BIN") start) &")
    bench_wait_url "http://127.0.0.1:$port/_ping" "$PEER_PID" "the peer"
}

# bench_peer_seed BASE N: registers and logs in a user on the peer, creates N projects through
# its scaffold API; sets PEER_TOKEN and PEER_PROJECT_ID (the first project's id).
bench_peer_seed() {
    local base="$1" n="$2" i status
    local user='{"email":"bench-peer@example.com","password":"Bench-passw0rd","name":"Bench peer"}'
    status="$(curl -sS -o "$WORK/peer.out" -w '%{http_code}' -H 'content-type: application/json' \
        --data "$user" "$base/api/auth/register")"
    [[ "$status" == 200 ]] || die "the peer: register answered $status: $(head -c 300 "$WORK/peer.out")"
    status="$(curl -sS -o "$WORK/peer.out" -w '%{http_code}' -H 'content-type: application/json' \
        --data "$user" "$base/api/auth/login")"
    [[ "$status" == 200 ]] || die "the peer: login answered $status: $(head -c 300 "$WORK/peer.out")"
    PEER_TOKEN="$(sed -n 's/.*"token":"\([^"]*\)".*/\1/p' "$WORK/peer.out")"
    [[ -n "$PEER_TOKEN" ]] || die "the peer: no token in its login answer"
    PEER_PROJECT_ID=""
    for ((i = 1; i <= n; i++)); do
        status="$(curl -sS -o "$WORK/peer.out" -w '%{http_code}' -H 'content-type: application/json' \
            -H "authorization: Bearer $PEER_TOKEN" \
            --data "{\"name\":\"Peer project $i\",\"description\":\"A project of the peer comparison\",\"status\":\"active\"}" \
            "$base/api/projects")"
        [[ "$status" == 2* ]] || die "the peer: POST /api/projects answered $status: $(head -c 300 "$WORK/peer.out")"
        if [[ -z "$PEER_PROJECT_ID" ]]; then
            PEER_PROJECT_ID="$(sed -n 's/.*"id":\([0-9]*\).*/\1/p' "$WORK/peer.out")"
        fi
    done
    [[ -n "$PEER_PROJECT_ID" ]] || die "the peer: no id in its POST /api/projects answer"
    COMMANDS+=("curl -X POST $base/api/auth/register; curl -X POST $base/api/auth/login; curl -X POST $base/api/projects × $n   # the peer's user and projects")
}
