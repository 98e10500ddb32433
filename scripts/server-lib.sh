# shellcheck shell=bash
# Starting and stopping a server process from a test script, shared by contract-check.sh,
# schemathesis.sh and the benchmarks (bench-lib.sh). Source it after defining `log` and `die`.

# http_status URL: the HTTP status of a GET (000 when nothing answers).
http_status() { curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$1" 2>/dev/null || true; }

# stop_pid PID: SIGTERM, up to 10 s for a graceful shutdown, then SIGKILL. Never fails.
stop_pid() {
    local pid="$1" i
    [[ -n "$pid" ]] || return 0
    if kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid" 2>/dev/null || true
        for ((i = 0; i < 100; i++)); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
    return 0
}

# wait_healthy PID URL SECS: waits until GET URL answers 200; dies if the process PID exits
# first or SECS pass.
wait_healthy() {
    local pid="$1" url="$2" secs="$3" waited=0
    until [[ "$(http_status "$url")" == 200 ]]; do
        kill -0 "$pid" 2>/dev/null || die "the server exited during start-up"
        ((waited < secs * 4)) || die "GET $url did not answer 200 within ${secs}s"
        sleep 0.25
        waited=$((waited + 1))
    done
}
