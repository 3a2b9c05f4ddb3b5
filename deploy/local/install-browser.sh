#!/usr/bin/env bash
# Installs what the real-browser test needs, once: Debian's chromium and
# playwright-core from the npm registry (into a cache folder outside the
# repository; playwright never downloads a browser of its own). Prints the
# folder holding node_modules/playwright-core on stdout; progress on stderr.
#   --check            install nothing: print the folder if installed, else fail
#   CODE_SERVER_CACHE  cache root (default ~/.cache/session-manager)
set -euo pipefail
PLAYWRIGHT_VERSION="${PLAYWRIGHT_VERSION:-1.65.1}"
ROOT="${CODE_SERVER_CACHE:-$HOME/.cache/session-manager}"
DIR="$ROOT/playwright-core-$PLAYWRIGHT_VERSION"

say() { echo "browser: $*" >&2; }
installed() { [[ -x /usr/bin/chromium && -f "$DIR/node_modules/playwright-core/package.json" && -f "$DIR/.complete" ]]; }
if installed; then echo "$DIR"; exit 0; fi
if [[ "${1:-}" == --check ]]; then
  say "chromium or playwright-core is not installed: run bash deploy/local/install-browser.sh (make test does)"
  exit 1
fi

mkdir -p "$ROOT"
exec 9>"$ROOT/.install-browser.lock"
flock 9
if installed; then echo "$DIR"; exit 0; fi

if [[ ! -x /usr/bin/chromium ]]; then
  say "installing chromium from Debian"
  # dpkg may be busy with another install (code-server's build deps): wait for it.
  for _ in $(seq 1 60); do
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; } >/dev/null 2>&1 && break
    sleep 5
  done
  [[ -x /usr/bin/chromium ]] || { say "could not install Debian's chromium"; exit 1; }
fi

say "installing playwright-core@$PLAYWRIGHT_VERSION from the npm registry into $DIR"
mkdir -p "$DIR"
PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm install --silent --no-audit --no-fund --prefix "$DIR" "playwright-core@$PLAYWRIGHT_VERSION" >&2 \
  || { say "npm install playwright-core@$PLAYWRIGHT_VERSION failed"; exit 1; }
touch "$DIR/.complete"
echo "$DIR"
