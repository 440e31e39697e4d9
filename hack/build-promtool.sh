#!/usr/bin/env bash
# Build promtool from the official Go module (github.com/prometheus/prometheus/cmd/promtool) at the
# version pinned in hack/promtool.env, into a cache directory keyed by everything that decides the
# result (as hack/build-tools.sh does for the Kubernetes tools), and print the binary's path. Never a
# prebuilt binary. Cold, it downloads and compiles every service-discovery SDK promtool links (about
# 15 minutes on 2 shared cores); after that a run only hashes two files.
#
# SYNAPSE_SCIM_PROMTOOL: a promtool to use instead (printed back as it is, nothing is built).
set -euo pipefail

if [ -n "${SYNAPSE_SCIM_PROMTOOL:-}" ] && [ -x "$SYNAPSE_SCIM_PROMTOOL" ]; then
  echo "$SYNAPSE_SCIM_PROMTOOL"
  exit 0
fi

here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=promtool.env
. "$here/promtool.env"

cache_root=${SYNAPSE_SCIM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/synapse-scim}
key=$( { go env GOVERSION GOOS GOARCH; cat "$here/promtool.env" "$0"; } | sha256sum | cut -c1-12)
out="$cache_root/promtool/$PROMETHEUS_VERSION-$key"
mkdir -p "$out"

if [ ! -x "$out/promtool" ]; then
  echo "build-promtool: building promtool $PROMETHEUS_VERSION ($PROMETHEUS_MODULE_VERSION; cold: several minutes)" >&2
  CGO_ENABLED=0 GOFLAGS=-trimpath GOTOOLCHAIN=local GOBIN="$out" go install \
    -ldflags "-s -w -X github.com/prometheus/common/version.Version=$PROMETHEUS_VERSION" \
    "github.com/prometheus/prometheus/cmd/promtool@$PROMETHEUS_MODULE_VERSION"
fi

# Older builds (another pin or another Go) are dead weight: keep only this one.
find "$cache_root/promtool" -mindepth 1 -maxdepth 1 -type d ! -name "$(basename "$out")" -exec rm -rf {} +

echo "$out/promtool"
