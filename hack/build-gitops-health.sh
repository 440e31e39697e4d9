#!/usr/bin/env bash
# Build hack/gitops-health (kstatus, as Flux computes it, and the Argo CD health Lua under gopher-lua)
# from the Go module proxy at the versions pinned in hack/gitops-health/go.mod + go.sum, into a cache
# directory keyed by everything that decides the result, and print the binary's path. A second run
# only hashes a few files. tests/ops/gitops.py runs it unless SYNAPSE_SCIM_GITOPS_HEALTH names a binary.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
src="$here/gitops-health"
cache_root=${SYNAPSE_SCIM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/synapse-scim}
key=$( { go env GOVERSION GOOS GOARCH; cat "$0" "$src/go.mod" "$src/go.sum" "$src"/*.go; } | sha256sum | cut -c1-12)
out="$cache_root/gitops-health/$key"

if [ ! -x "$out/gitops-health" ]; then
  echo "build-gitops-health: building sigs.k8s.io/cli-utils kstatus + github.com/yuin/gopher-lua (cold: about a minute)" >&2
  mkdir -p "$out"
  (cd "$src" && CGO_ENABLED=0 GOFLAGS=-trimpath GOTOOLCHAIN=local go build -mod=readonly -ldflags "-s -w" -o "$out/gitops-health.tmp" .)
  mv "$out/gitops-health.tmp" "$out/gitops-health"
fi

# Older builds (another pin or another Go) are dead weight: keep only this one.
find "$cache_root/gitops-health" -mindepth 1 -maxdepth 1 -type d ! -name "$key" -exec rm -rf {} +

echo "$out/gitops-health"
