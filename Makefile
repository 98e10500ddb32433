# Keel developer tasks. `make test` is the whole suite (what CI runs through .ci/run).
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

# Extra arguments for `make run`, e.g. `make run ARGS="migrate status"`.
ARGS ?=

.PHONY: help run test fmt lint unit integration-pg integration-sqlite release contract schemathesis \
	services-up services-down validate-deploy cluster-test backup-test bench bench-auth bench-tasks bench-cache

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F ':.*## ' '{ printf "  make %-20s %s\n", $$1, $$2 }'

run: ## run the service with the embedded defaults (SQLite, in-process cache)
	cargo run -p keel-api --bin keel -- $(ARGS)

test: ## the whole suite: fmt, clippy, unit, integration (PostgreSQL+Redis, SQLite), contract, cluster + faults, schemathesis
	scripts/test-all.sh

fmt: ## check formatting
	scripts/test-all.sh fmt

lint: ## clippy on every target, warnings are errors
	scripts/test-all.sh lint

unit: ## unit tests (every crate but keel-tests)
	scripts/test-all.sh unit

integration-pg: ## integration tests against PostgreSQL + Redis (starts and stops them)
	scripts/test-all.sh integration-pg

integration-sqlite: ## integration tests against SQLite and the in-process cache
	scripts/test-all.sh integration-sqlite

release: ## release build of the keel binary
	scripts/test-all.sh release

contract: ## release build, then validate the served OpenAPI document and run generated Python and TypeScript clients against it
	scripts/test-all.sh release contract

schemathesis: ## release build, then schemathesis against it
	scripts/test-all.sh release schemathesis

cluster-test: ## two release keel processes behind nginx on PostgreSQL + Redis: scale-out and fault tests
	scripts/test-all.sh cluster

services-up: ## start the test PostgreSQL + Redis and print their env
	scripts/services.sh start
	scripts/services.sh env

services-down: ## stop the test PostgreSQL + Redis
	scripts/services.sh stop

validate-deploy: ## check deploy/: nginx -t, YAML and Kubernetes schemas, compose schema, Dockerfile (no Docker needed)
	CI=1 scripts/test-all.sh deploy

backup-test: ## back up a running keel's PostgreSQL, restore it into a new database, check the restored data through the API (~1 min)
	bash scripts/test-backup.sh

bench: ## the performance budgets in one run and ONE table: seeds 1 000 000 tasks, every budget as a ratio to its reference, incl. the 10 000-connection mix (docs/performance.md; BENCH_QUICK=1 for a short run, BENCH_PEER=1 for the Loco peer)
	scripts/bench.sh

bench-auth: ## benchmark login, profile and /health on PostgreSQL (release build, wrk; ~3 min)
	scripts/bench-auth.sh

bench-cache: ## benchmark GET /projects/{id} uncached, from L2, from L1, the limiter's cost and a read-mostly mix (~3 min)
	scripts/bench-cache.sh

bench-tasks: ## benchmark filtered task lists over 1 000 000 tasks on PostgreSQL, with EXPLAIN (~10 min)
	scripts/bench-tasks.sh
