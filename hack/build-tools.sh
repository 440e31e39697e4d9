#!/usr/bin/env bash
# Build kube-apiserver, kube-controller-manager, kubectl, etcd and helm from the official Go modules at the versions pinned
# in hack/versions.env, into a cache directory keyed by everything that decides the result, and
# print that directory. A second run with everything built only hashes a few files.
#
# KUBEBUILDER_ASSETS (the controller-runtime envtest convention): if it names a directory holding
# kube-apiserver, etcd and kubectl, those are used instead of building them (helm is still built, and
# so is kube-controller-manager, which envtest's assets do not ship; the tests that need the namespace
# controller and the garbage collector start it).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=versions.env
. "$here/versions.env"

cache_root=${SYNAPSE_SCIM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/synapse-scim}
key=$( { go env GOVERSION GOOS GOARCH; cat "$here/versions.env" "$0" \
         "$here/kube/go.mod" "$here/kube/go.sum" "$here/etcd/go.mod" "$here/etcd/go.sum" "$here/etcd/main.go"; } \
       | sha256sum | cut -c1-12)
out="$cache_root/tools/$KUBERNETES_VERSION-$key"
mkdir -p "$out"

log() { echo "build-tools: $*" >&2; }

export CGO_ENABLED=0 GOFLAGS=-trimpath GOTOOLCHAIN=local

kube_ldflags() {
  local v=$KUBERNETES_VERSION minor date
  minor=$(echo "$v" | cut -d. -f2)
  # The module proxy's timestamp of the release: a reproducible build date.
  info=$(go mod download -json "k8s.io/kubernetes@$v" | sed -n 's/.*"Info": *"\([^"]*\)".*/\1/p')
  date=$(sed -n 's/.*"Time": *"\([^"]*\)".*/\1/p' "$info")
  local flags="-s -w"
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    flags+=" -X $pkg.gitVersion=$v -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
    flags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=$date"
  done
  echo "$flags"
}

have_assets() {
  [ -n "${KUBEBUILDER_ASSETS:-}" ] && [ -x "$KUBEBUILDER_ASSETS/kube-apiserver" ] \
    && [ -x "$KUBEBUILDER_ASSETS/etcd" ] && [ -x "$KUBEBUILDER_ASSETS/kubectl" ]
}

if have_assets; then
  log "using kube-apiserver, etcd and kubectl from KUBEBUILDER_ASSETS=$KUBEBUILDER_ASSETS"
  for b in kube-apiserver etcd kubectl; do ln -sf "$KUBEBUILDER_ASSETS/$b" "$out/$b"; done
else
  if [ ! -x "$out/kube-apiserver" ] || [ ! -x "$out/kubectl" ] || [ -L "$out/kubectl" ]; then
    log "building kube-apiserver and kubectl $KUBERNETES_VERSION (cold: several minutes)"
    rm -f "$out/kube-apiserver" "$out/kubectl"
    (cd "$here/kube" && go build -ldflags "$(kube_ldflags)" -o "$out/" \
      k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kubectl)
  fi
  if [ ! -x "$out/etcd" ] || [ -L "$out/etcd" ]; then
    log "building etcd $ETCD_VERSION"
    rm -f "$out/etcd"
    (cd "$here/etcd" && go build -ldflags "-s -w" -o "$out/etcd" .)
  fi
fi

# The namespace controller and the garbage collector live in kube-controller-manager: built from the
# same module and pin as kube-apiserver, also when the other binaries come from KUBEBUILDER_ASSETS.
if [ ! -x "$out/kube-controller-manager" ]; then
  log "building kube-controller-manager $KUBERNETES_VERSION (cold: several minutes)"
  (cd "$here/kube" && go build -ldflags "$(kube_ldflags)" -o "$out/" k8s.io/kubernetes/cmd/kube-controller-manager)
fi

if [ ! -x "$out/helm" ]; then
  log "building helm $HELM_VERSION"
  GOBIN="$out" go install \
    -ldflags "-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION -X helm.sh/helm/v3/internal/version.gitTreeState=clean" \
    "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
fi

# Older builds (another pin or another Go) are dead weight: keep only this one.
find "$cache_root/tools" -mindepth 1 -maxdepth 1 -type d ! -name "$(basename "$out")" -exec rm -rf {} +

echo "$out"
