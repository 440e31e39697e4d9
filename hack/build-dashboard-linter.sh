#!/usr/bin/env bash
# Build Grafana's dashboard-linter from its official Go module (github.com/grafana/dashboard-linter)
# at the version pinned in hack/dashboard-linter/go.mod + go.sum, with Loki's LogQL parser replaced
# by hack/dashboard-linter/lokistub (see its go.mod), into a cache directory keyed by everything that
# decides the result, and print the binary's path. A second run only hashes a few files.
# tests/chart/test_dashboard.py runs it unless SYNAPSE_SCIM_DASHBOARD_LINTER names a binary.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
src="$here/dashboard-linter"
cache_root=${SYNAPSE_SCIM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/synapse-scim}
key=$( { go env GOVERSION GOOS GOARCH; cat "$0" "$src/go.mod" "$src/go.sum" "$src/lokistub/go.mod" \
         "$src"/lokistub/pkg/logql/syntax/*.go; } | sha256sum | cut -c1-12)
out="$cache_root/dashboard-linter/$key"

if [ ! -x "$out/dashboard-linter" ]; then
  echo "build-dashboard-linter: building github.com/grafana/dashboard-linter (cold: a few minutes)" >&2
  mkdir -p "$out"
  # The linter is in no checksum database: go.sum, committed, is what verifies it (and everything else).
  (cd "$src" && CGO_ENABLED=0 GOFLAGS=-trimpath GOTOOLCHAIN=local GONOSUMDB=github.com/grafana/dashboard-linter \
    go build -mod=readonly -ldflags "-s -w" -o "$out/dashboard-linter.tmp" github.com/grafana/dashboard-linter)
  mv "$out/dashboard-linter.tmp" "$out/dashboard-linter"
fi

# Older builds (another pin or another Go) are dead weight: keep only this one.
find "$cache_root/dashboard-linter" -mindepth 1 -maxdepth 1 -type d ! -name "$key" -exec rm -rf {} +

echo "$out/dashboard-linter"
