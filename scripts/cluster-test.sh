#!/usr/bin/env bash
# The deployment tests (`make cluster-test`): two keel processes behind nginx on loopback, on
# PostgreSQL and Redis — the scale-out tests and the fault tests of tests/tests/cluster/.
#
#   scripts/cluster-test.sh [TEST FILTER...]
#
# It installs nginx (Debian's nginx-light) when missing, builds the release binary when
# target/release/keel is missing (KEEL_BIN overrides it), starts its own PostgreSQL with
# durable commits (KEEL_PG_DURABLE=1: the fault test crashes it) through scripts/services.sh
# in a state directory and on ports of its own, runs the ignored tests of the `cluster`
# test binary one at a time, and stops PostgreSQL on every exit. Each test starts its own
# keel processes, nginx and redis-server (tests/src/cluster.rs) and stops them itself.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"

export KEEL_SERVICES_DIR="${KEEL_CLUSTER_SERVICES_DIR:-$REPO/.ci/tmp/cluster-services}"
# A free port unless one is given: fixed ports in the ephemeral range can be taken by any
# outgoing connection on a busy machine.
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
export KEEL_PG_PORT="${KEEL_CLUSTER_PG_PORT:-$(free_port)}"
export KEEL_REDIS_PORT="${KEEL_CLUSTER_REDIS_PORT:-$(free_port)}"
export KEEL_PG_DURABLE=1

log() { printf 'cluster-test.sh: %s\n' "$*" >&2; }

# shellcheck source=scripts/lib/nginx.sh
source "$REPO/scripts/lib/nginx.sh"
nginx_bin="${NGINX:-$(find_nginx || true)}"
if [[ -z $nginx_bin || ! -x $nginx_bin ]]; then
    log "installing nginx-light"
    mkdir -p "$REPO/.ci/tmp"
    install_nginx "$REPO/.ci/tmp/cluster-apt.log" || {
        tail -n 20 "$REPO/.ci/tmp/cluster-apt.log" >&2 || true
        log "could not install nginx"
        exit 1
    }
    nginx_bin="$(find_nginx)"
fi
export NGINX="$nginx_bin"

export KEEL_BIN="${KEEL_BIN:-$REPO/target/release/keel}"
if [[ ! -x $KEEL_BIN ]]; then
    log "building the release binary ($KEEL_BIN is missing)"
    cargo build --release --locked -p keel-api --bin keel
fi

cleanup() { scripts/services.sh stop || true; }
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

scripts/services.sh start
eval "$(scripts/services.sh env)"
# Only PostgreSQL is shared (a database per test); each test runs its own redis-server.
unset KEEL_TEST_REDIS_URL
log "keel: $KEEL_BIN; nginx: $NGINX ($("$NGINX" -v 2>&1)); PostgreSQL: $KEEL_TEST_DATABASE_URL"

cargo test -p keel-tests --locked --test cluster -- --ignored --test-threads=1 "$@"
