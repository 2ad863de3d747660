#!/usr/bin/env bash
# Builds the deployment's images without any registry, from this workspace's
# release binaries plus exactly the shared libraries they load:
#   quorumhub:TAG     hub replicas, proxies, hubctl and the built-in
#                     single-user server (FROM scratch)
#   quorumhub-alt:TAG the same single-user server as a second image (marked
#                     QH_IMAGE=alt), so that the deployment's profiles
#                     (deploy/up.sh writes deploy/profiles.toml) offer two
#                     images; replace both with your own
#   quorumhub-lb:TAG  the front load balancer: HAProxy from Debian's package
#                     with deploy/haproxy.cfg (FROM scratch)
#
# Usage: deploy/build-images.sh [TAG]          (default TAG: dev)
#   QH_SKIP_CARGO=1   use the binaries already built (no cargo run)
#   QH_BIN_DIR=DIR    take quorumhub and hubctl from DIR (default target/release)
#   QH_REVISION=REV   the commit recorded in the image label (default: HEAD)
#
# Each TAG is independent: build v1 at one commit and v2 at another, then
# pick one with QH_TAG=v1 deploy/up.sh. The image label
# org.opencontainers.image.revision records the commit.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
tag=${1:-dev}
bin_dir=${QH_BIN_DIR:-$root/target/release}

die() { echo "build-images: $*" >&2; exit 1; }

if [ $# -gt 1 ]; then die "usage: deploy/build-images.sh [TAG]"; fi
# Docker's tag grammar: [A-Za-z0-9_][A-Za-z0-9_.-]{0,127}
if ! [[ $tag =~ ^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$ ]]; then
  die "invalid image tag '$tag' (letters, digits, _ . -; at most 128 characters)"
fi
command -v docker >/dev/null || die "docker is required"
docker info >/dev/null 2>&1 || die "the Docker engine is not reachable (docker info failed)"
command -v ldd >/dev/null || die "ldd is required (package libc-bin)"

if [ "${QH_SKIP_CARGO:-}" != 1 ]; then
  (cd "$root" && cargo build --release --locked -p quorumhub) || die "cargo build failed"
fi
for b in quorumhub hubctl; do
  if [ ! -x "$bin_dir/$b" ]; then
    die "$bin_dir/$b is missing; build it (cargo build --release -p quorumhub) or set QH_BIN_DIR"
  fi
done
if [ ! -x /usr/sbin/haproxy ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "build-images: installing haproxy from the Debian archive ..." >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q haproxy >/dev/null 2>&1 \
      || { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q haproxy >/dev/null; } \
      || die "apt-get install haproxy failed"
  else
    die "/usr/sbin/haproxy is missing: sudo apt-get install haproxy"
  fi
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# rootfs DEST BINARY...: the binaries in /usr/local/bin plus every shared
# library ldd names (and the dynamic loader), a minimal /etc, /tmp.
# Name resolution: glibc >= 2.34 (Debian 12 has 2.36) has the `files` and
# `dns` NSS modules built into libc.so.6, so no libnss_*.so is needed;
# Docker bind-mounts /etc/hosts and /etc/resolv.conf (its embedded DNS,
# 127.0.0.11) into every container.
rootfs() {
  local dest=$1; shift
  mkdir -p "$dest/etc" "$dest/tmp" "$dest/usr/local/bin"
  chmod 1777 "$dest/tmp"
  local bin name lib libs
  for bin in "$@"; do
    name=$(basename "$bin")
    cp "$bin" "$dest/usr/local/bin/$name"
    # Debug line tables stay in target/release for symbolising backtraces.
    if command -v strip >/dev/null; then strip --strip-debug "$dest/usr/local/bin/$name"; fi
    if ldd "$bin" | grep -q 'not found'; then
      die "$bin needs a library this host lacks: $(ldd "$bin" | grep 'not found' | tr -s ' \t' ' ')"
    fi
    libs=$(ldd "$bin" | awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\// {print $1}')
    for lib in $libs; do
      mkdir -p "$dest$(dirname "$lib")"
      cp -L "$lib" "$dest$lib"
    done
  done
  printf 'root:x:0:0:root:/root:/sbin/nologin\nquorumhub:x:1000:1000:quorumhub:/data:/sbin/nologin\n' \
    >"$dest/etc/passwd"
  printf 'root:x:0:\nquorumhub:x:1000:\n' >"$dest/etc/group"
  printf 'hosts: files dns\n' >"$dest/etc/nsswitch.conf"
}

# build NAME CONTEXT: docker build, then drop the image this tag used to
# name if no tag or container uses it any more (keeps rebuilds from piling
# up <none> images).
build() {
  local image=$1 context=$2 old new
  old=$(docker image inspect -f '{{.Id}}' "$image" 2>/dev/null || true)
  # (stderr kept for failures only: the legacy builder's deprecation notice
  # is noise here, and BuildKit/buildx may not be installed)
  if ! docker build -q -t "$image" "$context" >/dev/null 2>"$work/build.err"; then
    cat "$work/build.err" >&2
    die "docker build of $image failed"
  fi
  new=$(docker image inspect -f '{{.Id}}' "$image")
  # Only if it is now untagged: rm by id would also untag another tag of it.
  if [ -n "$old" ] && [ "$old" != "$new" ] \
    && [ "$(docker image inspect -f '{{len .RepoTags}}' "$old" 2>/dev/null)" = 0 ]; then
    docker image rm "$old" >/dev/null 2>&1 || true
  fi
}

revision=${QH_REVISION:-$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)}
if [ -z "${QH_REVISION:-}" ] && [ "$revision" != unknown ] && [ -n "$(git -C "$root" status --porcelain --untracked-files=no 2>/dev/null)" ]; then
  revision="$revision-dirty"
fi

# The hub image. Hubs keep their data in a named volume at /var/lib/quorumhub
# with the data dir /var/lib/quorumhub/data (it exists in the image, so a new
# volume starts with it empty; the chaos suite wipes and re-seeds exactly this
# path). /data exists too, for running a replica by hand with -v ...:/data.
mkdir -p "$work/hub"
rootfs "$work/hub/rootfs" "$bin_dir/quorumhub" "$bin_dir/hubctl"
mkdir -p "$work/hub/rootfs/var/lib/quorumhub/data" "$work/hub/rootfs/data"
cat >"$work/hub/Dockerfile" <<DOCKERFILE
FROM scratch
COPY rootfs/ /
ENV PATH=/usr/local/bin
LABEL org.opencontainers.image.title="quorumhub" org.opencontainers.image.revision="$revision"
ENTRYPOINT ["/usr/local/bin/quorumhub"]
DOCKERFILE
build "quorumhub:$tag" "$work/hub"
# Smoke test: the binaries start in the image (the loader and libraries are
# all there).
docker run --rm "quorumhub:$tag" --help >/dev/null || die "quorumhub:$tag does not run"
docker run --rm --entrypoint /usr/local/bin/hubctl "quorumhub:$tag" --version >/dev/null \
  || die "hubctl does not run in quorumhub:$tag"

# A second single-user image for the deployment's second profile.
mkdir -p "$work/alt"
cat >"$work/alt/Dockerfile" <<DOCKERFILE
FROM quorumhub:$tag
ENV QH_IMAGE=alt
LABEL org.opencontainers.image.title="quorumhub-alt" org.opencontainers.image.revision="$revision"
DOCKERFILE
build "quorumhub-alt:$tag" "$work/alt"

# The load balancer image.
mkdir -p "$work/lb"
rootfs "$work/lb/rootfs" /usr/sbin/haproxy
mkdir -p "$work/lb/rootfs/etc/haproxy"
cp "$root/deploy/haproxy.cfg" "$work/lb/rootfs/etc/haproxy/haproxy.cfg"
cat >"$work/lb/Dockerfile" <<DOCKERFILE
FROM scratch
COPY rootfs/ /
LABEL org.opencontainers.image.title="quorumhub-lb" org.opencontainers.image.revision="$revision"
ENTRYPOINT ["/usr/local/bin/haproxy", "-W", "-db", "-f", "/etc/haproxy/haproxy.cfg"]
DOCKERFILE
build "quorumhub-lb:$tag" "$work/lb"
# Check the configuration with this very binary (-c: check and exit).
docker run --rm "quorumhub-lb:$tag" -c -q >/dev/null || {
  docker run --rm "quorumhub-lb:$tag" -c >&2 || true
  die "deploy/haproxy.cfg does not pass haproxy -c"
}

echo "built from $revision:"
for image in "quorumhub:$tag" "quorumhub-alt:$tag" "quorumhub-lb:$tag"; do
  bytes=$(docker image inspect -f '{{.Size}}' "$image")
  printf '  %-24s %6s MB  (%s bytes)\n' "$image" "$(awk -v b="$bytes" 'BEGIN {printf "%.1f", b / 1e6}')" "$bytes"
done
