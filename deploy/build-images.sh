#!/usr/bin/env bash
# Builds the deployment's images without any registry, from this workspace's
# release binaries plus exactly the shared libraries they load:
#   quorumhub:TAG     hub replicas, proxies, hubctl and the built-in
#                     single-user server (FROM scratch)
#   quorumhub-lb:TAG  the front load balancer: HAProxy from Debian's package
#                     with deploy/haproxy.cfg (FROM scratch)
#
# Usage: deploy/build-images.sh [TAG]          (default TAG: dev)
#   QH_SKIP_CARGO=1   use the binaries already built
#   QH_BIN_DIR=DIR    take quorumhub and hubctl from DIR (default target/release)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
tag=${1:-dev}
bin_dir=${QH_BIN_DIR:-$root/target/release}

if ! command -v docker >/dev/null; then
  echo "build-images: docker is required" >&2; exit 1
fi
if [ "${QH_SKIP_CARGO:-}" != 1 ]; then
  (cd "$root" && cargo build --release --locked -p quorumhub)
fi
for b in quorumhub hubctl; do
  if [ ! -x "$bin_dir/$b" ]; then
    echo "build-images: $bin_dir/$b is missing; build it (cargo build --release -p quorumhub) or set QH_BIN_DIR" >&2
    exit 1
  fi
done
if [ ! -x /usr/sbin/haproxy ]; then
  if [ "$(id -u)" = 0 ]; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q haproxy >/dev/null \
      || { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q haproxy >/dev/null; }
  else
    echo "build-images: /usr/sbin/haproxy is missing: sudo apt-get install haproxy" >&2; exit 1
  fi
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# rootfs DEST BINARY...: the binaries in /usr/local/bin plus every shared
# library ldd names (and the dynamic loader), a minimal /etc, /tmp.
rootfs() {
  local dest=$1; shift
  mkdir -p "$dest/etc" "$dest/tmp" "$dest/usr/local/bin"
  chmod 1777 "$dest/tmp"
  local bin lib
  for bin in "$@"; do
    cp "$bin" "$dest/usr/local/bin/"
    # Debug line tables stay in target/release for symbolising backtraces.
    if command -v strip >/dev/null; then strip --strip-debug "$dest/usr/local/bin/$(basename "$bin")"; fi
    for lib in $(ldd "$bin" | awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\// {print $1}'); do
      mkdir -p "$dest$(dirname "$lib")"
      cp -L "$lib" "$dest$lib"
    done
  done
  printf 'root:x:0:0:root:/root:/sbin/nologin\n' >"$dest/etc/passwd"
  printf 'root:x:0:\n' >"$dest/etc/group"
  # Peers are found by service name through Docker's embedded DNS.
  printf 'hosts: files dns\n' >"$dest/etc/nsswitch.conf"
}

revision=$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)

# The hub image. /var/lib/quorumhub/data exists in the image so that a new
# named volume mounted at /var/lib/quorumhub starts with an empty data dir.
mkdir -p "$work/hub"
rootfs "$work/hub/rootfs" "$bin_dir/quorumhub" "$bin_dir/hubctl"
mkdir -p "$work/hub/rootfs/var/lib/quorumhub/data"
cat >"$work/hub/Dockerfile" <<DOCKERFILE
FROM scratch
COPY rootfs/ /
ENV PATH=/usr/local/bin
LABEL org.opencontainers.image.title="quorumhub" org.opencontainers.image.revision="$revision"
ENTRYPOINT ["/usr/local/bin/quorumhub"]
DOCKERFILE
docker build -q -t "quorumhub:$tag" "$work/hub" >/dev/null

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
docker build -q -t "quorumhub-lb:$tag" "$work/lb" >/dev/null

docker image ls --format '{{.Repository}}:{{.Tag}}  {{.Size}}' | grep -E "^quorumhub(-lb)?:$tag " || true
echo "built quorumhub:$tag and quorumhub-lb:$tag from $revision"
