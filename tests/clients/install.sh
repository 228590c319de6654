#!/usr/bin/env bash
# Install the official analytics clients that tests/test_clients.py runs against the collector, from the
# pinned files next to this script, and reuse them while those files are unchanged:
#
#   tests/clients/install.sh node   npm ci from node/package-lock.json into node/node_modules
#   tests/clients/install.sh go     go build of go/main.go (modules pinned by go.mod + go.sum) into go/bin/
#
# Exits 3 with a message naming the missing tool when node/npm or go is not installed.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
started=$(date +%s)
step() { echo "clients: [$(( $(date +%s) - started ))s] $*" >&2; }
need() {
  for tool in "$@"; do
    command -v "$tool" >/dev/null || { echo "tests/clients/install.sh: $tool is missing on this machine (the client tests need it)" >&2; exit 3; }
  done
}
stamp_of() { cat "$@" | cksum | cut -d' ' -f1; }

case "${1:-}" in
  node)
    need node npm
    dir="$here/node"
    stamp="$dir/node_modules/.eventpipe-$(stamp_of "$dir/package.json" "$dir/package-lock.json")"
    if [ ! -e "$stamp" ]; then
      step "npm ci in $dir (first run, or the lockfile changed)"
      # --omit=optional: RudderStack's Redis-backed queue (bull), unused here; no install scripts are needed
      (cd "$dir" && npm ci --omit=optional --ignore-scripts --no-audit --no-fund --loglevel=error >&2)
      touch "$stamp"
      step "node clients installed"
    fi
    ;;
  go)
    need go
    dir="$here/go"
    bin="$dir/bin/segment-go"
    stamp="$dir/bin/.eventpipe-$(stamp_of "$dir/go.mod" "$dir/go.sum" "$dir/main.go")-$(go env GOVERSION)"
    if [ ! -x "$bin" ] || [ ! -e "$stamp" ]; then
      step "go build in $dir (first run, or its sources changed)"
      rm -rf "$dir/bin"
      (cd "$dir" && GOTOOLCHAIN=local GOFLAGS="-buildvcs=false -mod=readonly" go build -o "$bin" .)
      touch "$stamp"
      step "go client built"
    fi
    echo "$bin"
    ;;
  *)
    echo "usage: tests/clients/install.sh node|go" >&2
    exit 2
    ;;
esac
