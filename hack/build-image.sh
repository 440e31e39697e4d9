#!/usr/bin/env bash
# Build the operator's image with buildah, on a machine with no Docker engine and no container
# registry, as root:
#   1. installs buildah and debootstrap from Debian if they are missing;
#   2. debootstraps a minimal bookworm (--variant=minbase, slimmed like the official -slim image) into
#      the cache, once;
#   3. imports it into buildah's storage as localhost/debian:bookworm-slim, once: the Dockerfile's
#      `FROM debian:bookworm-slim` resolves to it and nothing is ever pulled (--pull=never);
#   4. `buildah bud --isolation chroot --layers` the Dockerfile, handing this machine's certificate
#      authority to the pip steps as the build secret `ca` (never stored in the image).
# Prints KEY=VALUE lines (IMAGE, IMAGE_ID, SIZE_BYTES, SIZE, STORAGE_DRIVER, BUILD_SECONDS, ...) on
# stdout and writes them to build/image.env; everything else goes to stderr. A second run with
# nothing changed only checks the layer cache.
#
# Environment: SYNAPSE_SCIM_CACHE (cache root, as for hack/build-tools.sh), SYNAPSE_SCIM_IMAGE (tag,
# default synapse-scim:<version of pyproject.toml>), SYNAPSE_SCIM_BUILD_CA (the CA bundle for PyPI,
# default /etc/ssl/certs/ca-certificates.crt), DEBIAN_MIRROR, DEBIAN_SECURITY_MIRROR, STORAGE_DRIVER
# (buildah's; default: what the store already uses, else overlay if the kernel mounts it here, else vfs).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)

cache_root=${SYNAPSE_SCIM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/synapse-scim}
cache=$cache_root/image
version=$(sed -n 's/^version *= *"\(.*\)"/\1/p' "$repo/pyproject.toml" | head -n1)
image=${SYNAPSE_SCIM_IMAGE:-synapse-scim:$version}
suite=bookworm
base=localhost/debian:$suite-slim
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
security_mirror=${DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}
ca=${SYNAPSE_SCIM_BUILD_CA:-/etc/ssl/certs/ca-certificates.crt}
info=$repo/build/image.env
storage_conf=${CONTAINERS_STORAGE_CONF:-/etc/containers/storage.conf}

log() { echo "build-image: $*" >&2; }
die() { log "$*"; exit 1; }

[ "$(id -u)" = 0 ] || die "run as root (rootful buildah storage, debootstrap)"

# --- 1. tools ------------------------------------------------------------------------------------
install_tools() {
  local need=()
  command -v buildah >/dev/null || need+=(buildah)
  command -v debootstrap >/dev/null || need+=(debootstrap)
  [ -e /usr/share/keyrings/debian-archive-keyring.gpg ] || need+=(debian-archive-keyring)
  ((${#need[@]})) || return 0
  log "installing ${need[*]}"
  # No Recommends: chroot isolation needs no OCI runtime (runc/crun), and the storage driver is the
  # kernel's overlay or vfs, so fuse-overlayfs is not needed either.
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >&2
}

storage_conf() {  # a setting of containers-storage.conf(5), if set
  [ -f "$storage_conf" ] || return 0
  sed -n "s/^[[:space:]]*$1[[:space:]]*=[[:space:]]*\"\(.*\)\".*/\1/p" "$storage_conf" | head -n1
}

# As configured, else overlay where the kernel lets us mount it on the storage's filesystem (not on
# top of another overlay, e.g. inside a container), else vfs (full copies: slower, bigger). A store
# keeps the driver it was created with.
pick_storage_driver() {
  if [ -n "${STORAGE_DRIVER:-}" ]; then echo "$STORAGE_DRIVER"; return; fi
  local configured
  configured=$(storage_conf driver)
  if [ -n "$configured" ]; then echo "$configured"; return; fi
  if [ -d "$graphroot/overlay-images" ]; then echo overlay; return; fi
  if [ -d "$graphroot/vfs-images" ]; then echo vfs; return; fi
  mkdir -p "$graphroot"
  local probe
  probe=$(mktemp -d "$graphroot/.overlay-probe.XXXXXX")
  mkdir "$probe/lower" "$probe/upper" "$probe/work" "$probe/merged"
  if mount -t overlay overlay -o "lowerdir=$probe/lower,upperdir=$probe/upper,workdir=$probe/work" \
       "$probe/merged" 2>/dev/null; then
    umount "$probe/merged"
    echo overlay
  else
    echo vfs
  fi
  rm -rf "$probe"
}

# --- 2. the base root filesystem ----------------------------------------------------------------
# What the official debian:bookworm-slim does to a minbase: no docs, man pages or locales (now or in
# any later `apt-get install`), no apt caches, no host leftovers (resolv.conf, hostname), and no
# services started by package installs.
slimify() {
  local r=$1
  cat >"$r/etc/dpkg/dpkg.cfg.d/docker-slim" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/lintian/*
path-exclude /usr/share/linda/*
path-exclude /usr/share/locale/*
EOF
  find "$r/usr/share/doc" -mindepth 1 -not -type d -not -name copyright -delete
  find "$r/usr/share/doc" -mindepth 1 -type d -empty -delete
  rm -rf "$r"/usr/share/{man,groff,info,lintian,linda,locale}/*
  cat >"$r/etc/apt/apt.conf.d/docker-clean" <<'EOF'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
EOF
  echo 'Acquire::Languages "none";' >"$r/etc/apt/apt.conf.d/docker-no-languages"
  echo 'Acquire::GzipIndexes "true";' >"$r/etc/apt/apt.conf.d/docker-gzip-indexes"
  echo 'Apt::AutoRemove::SuggestsImportant "false";' >"$r/etc/apt/apt.conf.d/docker-autoremove-suggests"
  rm -f "$r/etc/apt/sources.list"
  cat >"$r/etc/apt/sources.list.d/debian.sources" <<EOF
Types: deb
URIs: $mirror
Suites: $suite $suite-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: $security_mirror
Suites: $suite-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
  printf '#!/bin/sh\nexit 101\n' >"$r/usr/sbin/policy-rc.d"
  chmod 0755 "$r/usr/sbin/policy-rc.d"
  rm -rf "$r"/var/lib/apt/lists/* "$r"/var/cache/apt/*.bin "$r"/var/cache/apt/archives/*.deb \
         "$r"/var/cache/apt/archives/partial/* "$r"/var/cache/debconf/*-old "$r"/var/lib/dpkg/*-old \
         "$r"/var/log/apt/* "$r"/var/log/*.log "$r"/var/log/bootstrap.log "$r"/tmp/* "$r"/root/.cache
  rm -f "$r/etc/resolv.conf" "$r/etc/hostname" "$r/etc/machine-id"
}

unmount_under() {  # whatever a failed debootstrap left mounted (proc, sys, ...) under $1
  awk -v d="$1/" 'index($2, d) == 1 { print $2 }' /proc/mounts | sort -r | xargs -r -n1 umount -l
}

make_rootfs() {
  local tmp=$rootfs.tmp
  unmount_under "$tmp"
  rm -rf --one-file-system "$tmp"
  log "debootstrap $suite (minbase) from $mirror into $tmp"
  debootstrap --variant=minbase --arch="$arch" "$suite" "$tmp" "$mirror" >&2 \
    || { unmount_under "$tmp"; die "debootstrap failed (see $tmp/debootstrap/debootstrap.log)"; }
  unmount_under "$tmp"
  slimify "$tmp"
  rm -rf --one-file-system "$rootfs"
  mv "$tmp" "$rootfs"
  echo "$rootfs_key" >"$rootfs.key"
}

# --- 3. the base image -----------------------------------------------------------------------------
# From scratch + a copy of the tree into the mounted container: ownership, modes, hard links and
# xattrs as debootstrap made them (buildah has no `import`; `buildah add` of a tarball would apply
# its own ownership rules).
import_base() {
  local ctr mnt
  log "importing $rootfs as $base"
  ctr=$(buildah from --pull=never scratch)
  trap 'buildah rm "$ctr" >/dev/null 2>&1 || true' EXIT
  mnt=$(buildah mount "$ctr")
  cp -a "$rootfs/." "$mnt/"
  buildah umount "$ctr" >/dev/null
  buildah config --os linux --arch "$arch" \
    --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin --cmd '["bash"]' \
    --created-by "debootstrap --variant=minbase $suite $mirror (hack/build-image.sh)" "$ctr"
  buildah commit --quiet --rm "$ctr" "$base" >/dev/null
  trap - EXIT
  buildah inspect --type image --format '{{.FromImageID}}' "$base" >/dev/null
  echo "$rootfs_key $(image_id "$base")" >"$base_key_file"
}

image_id() { buildah images --noheading --no-trunc --format '{{.ID}}' "$1" 2>/dev/null | head -n1; }

# --- main ---------------------------------------------------------------------------------------
install_tools
graphroot=$(storage_conf graphroot)
graphroot=${graphroot:-/var/lib/containers/storage}
STORAGE_DRIVER=$(pick_storage_driver)
export STORAGE_DRIVER
arch=$(dpkg --print-architecture)
mkdir -p "$cache"
exec 9>"$cache/.lock"
flock 9  # one build at a time: the rootfs and the base tag are shared

rootfs=$cache/$suite-rootfs
rootfs_key=$( { echo "$suite $mirror $security_mirror $arch"; declare -f slimify make_rootfs; } | sha256sum | cut -c1-12)
t0=$(date +%s)
if [ -f "$rootfs.key" ] && [ "$(cat "$rootfs.key")" = "$rootfs_key" ] && [ -x "$rootfs/usr/bin/apt-get" ]; then
  log "base rootfs: $rootfs (cached)"
else
  make_rootfs
fi
# Which rootfs the base image of this store (driver + root) was made from.
base_key_file=$cache/base-$STORAGE_DRIVER-$(printf '%s' "$graphroot" | sha256sum | cut -c1-8).key
read -r base_key base_id <"$base_key_file" 2>/dev/null || true
if [ "${base_key:-}" = "$rootfs_key" ] && [ -n "${base_id:-}" ] && [ "$(image_id "$base")" = "$base_id" ]; then
  log "base image: $base (cached)"
else
  import_base
fi
t1=$(date +%s)

build_args=(--build-arg "VERSION=$version"
            --build-arg "REVISION=$(git -C "$repo" rev-parse HEAD 2>/dev/null || echo unknown)")
if [ -s "$ca" ]; then
  build_args+=(--secret "id=ca,src=$ca")
else
  log "no CA bundle at $ca: pip uses its own trust store"
fi
log "buildah bud -t $image (storage driver $STORAGE_DRIVER)"
buildah bud --isolation chroot --layers --pull=never --network host \
  "${build_args[@]}" -f "$repo/Dockerfile" -t "$image" "$repo" >&2
t2=$(date +%s)

case $image in
  */*) full=$image ;;
  *) full=localhost/$image ;;  # how buildah names a local image without a registry
esac
id=$(buildah inspect --type image --format '{{.FromImageID}}' "$image")
size=$(buildah images --noheading --format '{{.Size}}' "$image" | head -n1)
# Bytes of the image's root filesystem (what `buildah images` rounds), from a throwaway container.
ctr=$(buildah from --pull=never "$image")
trap 'buildah rm "$ctr" >/dev/null 2>&1 || true' EXIT
size_bytes=$(du -sb --apparent-size "$(buildah mount "$ctr")" | cut -f1)
mkdir -p "$(dirname "$info")"
{
  echo "IMAGE=$full"
  echo "IMAGE_ID=$id"
  echo "SIZE_BYTES=$size_bytes"
  echo "SIZE='$size'"
  echo "BASE_IMAGE=$base"
  echo "STORAGE_DRIVER=$STORAGE_DRIVER"
  echo "BASE_SECONDS=$((t1 - t0))"
  echo "BUILD_SECONDS=$((t2 - t1))"
} | tee "$info"
log "image $full id ${id:0:12} size $size (${size_bytes} bytes); written to $info"
