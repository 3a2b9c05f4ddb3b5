#!/usr/bin/env bash
# `make deploy-check`: install the tools once (ensure-tools.sh), run the
# checkers' own unit tests, then render, lint and validate deploy/.
# Arguments are passed to deploy_check.py (e.g. `--objects FILE_OR_DIR`,
# `-` for stdin).
# Env: DEPLOY_CHECK_VENV (default .venv), RBAC_CALLS_DIR (default
# target/k8s-calls), RBAC_CALLS_REQUIRED=1 (fail without recorded calls),
# K8S_SCHEMAS_DIR (default ../shared/k8s-schemas).
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root"
venv="${DEPLOY_CHECK_VENV:-$root/.venv}"
bash deploy/check/ensure-tools.sh
"$venv/bin/python" -m unittest discover -s deploy/check -p 'test_*.py'
exec "$venv/bin/python" deploy/check/deploy_check.py "$@"
