# Shared by scripts/bench-auth.sh and scripts/bench-tasks.sh (sourced, not run). The caller
# defines log/die and the variables REPO, WORK, KEEL_BIN, KEEL_PID, SERVICES_STARTED,
# SERVICES_ENV, CARGO_TARGET_DIR and the array COMMANDS before calling these.

# Stops keel if it runs: SIGTERM, up to 10 s for the graceful shutdown, then SIGKILL.
bench_stop_keel() {
    local i
    if [[ -n "$KEEL_PID" ]] && kill -0 "$KEEL_PID" 2>/dev/null; then
        log "stopping keel (pid $KEEL_PID)"
        kill -TERM "$KEEL_PID" 2>/dev/null
        for ((i = 0; i < 100; i++)); do
            kill -0 "$KEEL_PID" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$KEEL_PID" 2>/dev/null
        wait "$KEEL_PID" 2>/dev/null
    fi
}

# The end of every run, whatever happened: keel and the private services stopped, keel's last
# log lines shown on failure, the work directory removed, exit with `rc`.
bench_finish() {
    local rc=$1
    set +e
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
