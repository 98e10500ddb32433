#!/usr/bin/env bash
# shellcheck disable=SC2317  # step functions and the exit handler are called indirectly
# The whole test suite, in order (what `make test` and CI run):
#
#   fmt                 cargo fmt --all -- --check
#   lint                cargo clippy --workspace --all-targets --locked -- -D warnings
#   unit                cargo test --workspace --locked --exclude keel-tests
#   integration-pg      cargo test -p keel-tests --locked against PostgreSQL + Redis
#                       (scripts/services.sh start; KEEL_TEST_DATABASE_URL, KEEL_TEST_REDIS_URL)
#   integration-sqlite  cargo test -p keel-tests --locked with both variables unset
#   deploy              scripts/validate-deploy.sh: nginx -t, Kubernetes and compose schemas,
#                       Dockerfile checks (no Docker engine needed)
#   release             cargo build --release --locked -p keel-api --bin keel
#   contract            scripts/contract-check.sh: the served OpenAPI document validated
#                       (openapi-spec-validator), generated Python and TypeScript clients run
#                       a short flow against the release binary (tools installed on first use
#                       under .ci/tmp/contract)
#   backup              scripts/test-backup.sh: pg-backup.sh backup of a running keel, restore
#                       into a new database, the restored data checked through the API (uses
#                       the release binary; its own PostgreSQL + Redis on ports 55452/56399)
#   cluster             scripts/cluster-test.sh: two release keel processes behind nginx on
#                       PostgreSQL + Redis; the scale-out and fault tests
#   schemathesis        scripts/schemathesis.sh against target/release/keel
#
# Usage: scripts/test-all.sh [STEP...]   (no STEP: all of them, in the order above)
# Services started here are always stopped on exit, also on failure or interruption.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"

ALL_STEPS=(fmt lint unit integration-pg integration-sqlite deploy release contract backup cluster schemathesis)

declare -A TITLE=(
    [fmt]="formatting (cargo fmt --check)"
    [lint]="clippy (-D warnings)"
    [unit]="unit tests"
    [integration-pg]="integration tests on PostgreSQL + Redis"
    [integration-sqlite]="integration tests on SQLite"
    [deploy]="deploy artifacts (nginx -t, manifest schemas, Dockerfile)"
    [release]="release build"
    [contract]="OpenAPI validation and generated clients against the release binary"
    [backup]="PostgreSQL backup and restore round trip"
    [cluster]="cluster and fault tests (two instances behind nginx)"
    [schemathesis]="schemathesis against the release binary"
)

# Each step runs as a background subshell in its own process group, so that an interruption
# stops all of it; the exit handler stops the services whatever state a step left them in.
step_fmt() { cargo fmt --all -- --check; }

step_lint() { cargo clippy --workspace --all-targets --locked -- -D warnings; }

step_unit() { cargo test --workspace --locked --exclude keel-tests; }

step_integration_pg() {
    scripts/services.sh start || return
    local env_text rc=0
    env_text="$(scripts/services.sh env)" || return
    (
        eval "$env_text"
        if [[ -z "${KEEL_TEST_DATABASE_URL:-}" || -z "${KEEL_TEST_REDIS_URL:-}" ]]; then
            echo "test-all.sh: services env lacks KEEL_TEST_DATABASE_URL/KEEL_TEST_REDIS_URL" >&2
            exit 1
        fi
        echo "KEEL_TEST_DATABASE_URL=$KEEL_TEST_DATABASE_URL KEEL_TEST_REDIS_URL=$KEEL_TEST_REDIS_URL"
        # The black-box suite, and the adapters' own tests (stores, idempotency middleware),
        # which also run on PostgreSQL when KEEL_TEST_DATABASE_URL is set.
        exec cargo test -p keel-tests -p keel-infrastructure -p keel-api --locked
    ) || rc=$?
    scripts/services.sh stop
    return "$rc"
}

step_integration_sqlite() {
    env -u KEEL_TEST_DATABASE_URL -u KEEL_TEST_REDIS_URL cargo test -p keel-tests --locked
}

step_deploy() { CI="${CI:-1}" bash scripts/validate-deploy.sh; }

step_release() { cargo build --release --locked -p keel-api --bin keel; }

step_contract() { scripts/contract-check.sh; }

step_backup() { scripts/test-backup.sh; }

step_cluster() { scripts/cluster-test.sh; }

step_schemathesis() { scripts/schemathesis.sh; }

# ---------------------------------------------------------------------------------------------

if (($# == 0)); then
    STEPS=("${ALL_STEPS[@]}")
else
    STEPS=("$@")
    for s in "${STEPS[@]}"; do
        [[ -n "${TITLE[$s]:-}" ]] || {
            echo "test-all.sh: unknown step '$s' (steps: ${ALL_STEPS[*]})" >&2
            exit 2
        }
    done
fi

if ! command -v cargo >/dev/null 2>&1 && [[ -x "$HOME/.cargo/bin/cargo" ]]; then
    export PATH="$HOME/.cargo/bin:$PATH"
fi
command -v cargo >/dev/null 2>&1 || {
    echo "test-all.sh: cargo not found on PATH" >&2
    exit 127
}

SUMMARY=()
TOTAL_START=$SECONDS
STEP_START=$SECONDS
CURRENT=""

summary() {
    echo
    echo "==> summary"
    local line
    for line in "${SUMMARY[@]}"; do
        echo "    $line"
    done
    if [[ -n "$CURRENT" ]]; then
        printf '    %-20s %6ss  %s\n' "$CURRENT" "$((SECONDS - STEP_START))" "INTERRUPTED"
    fi
    printf '    %-20s %6ss\n' "total" "$((SECONDS - TOTAL_START))"
}

STEP_PID=""
SERVICES_MAYBE_UP=0

on_exit() {
    local rc=$?
    trap - EXIT
    if [[ -n "$STEP_PID" ]]; then
        kill -TERM -- "-$STEP_PID" 2>/dev/null || kill -TERM "$STEP_PID" 2>/dev/null || true
        wait "$STEP_PID" 2>/dev/null || true
    fi
    if ((SERVICES_MAYBE_UP)); then
        scripts/services.sh stop || true
    fi
    summary
    if ((rc == 0)); then
        echo "==> all ${#STEPS[@]} steps passed"
    else
        echo "==> FAILED (exit $rc)"
    fi
    exit "$rc"
}
trap on_exit EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

n=${#STEPS[@]}
i=0
for s in "${STEPS[@]}"; do
    i=$((i + 1))
    echo
    echo "==> [$i/$n] ${TITLE[$s]}"
    STEP_START=$SECONDS
    CURRENT="$s"
    if [[ "$s" == integration-pg ]]; then SERVICES_MAYBE_UP=1; fi
    rc=0
    set -m
    "step_${s//-/_}" </dev/null &
    STEP_PID=$!
    set +m
    wait "$STEP_PID" || rc=$?
    STEP_PID=""
    # On failure the exit handler stops the services, whatever state the step left them in.
    if ((rc == 0)); then SERVICES_MAYBE_UP=0; fi
    CURRENT=""
    elapsed=$((SECONDS - STEP_START))
    if ((rc == 0)); then
        echo "==> [$i/$n] ${TITLE[$s]}: ok in ${elapsed}s"
        SUMMARY+=("$(printf '%-20s %6ss  ok' "$s" "$elapsed")")
    else
        echo "==> [$i/$n] ${TITLE[$s]}: FAILED (exit $rc) after ${elapsed}s"
        SUMMARY+=("$(printf '%-20s %6ss  FAILED (exit %s)' "$s" "$elapsed" "$rc")")
        exit "$rc"
    fi
done
