#!/usr/bin/env bash
# Builds quorumhub-slurm:TAG without any registry: Debian's Slurm 22.05
# (slurmctld, slurmd, slurmstepd, the client commands and the plugins they
# dlopen), munge, a /bin/sh for batch scripts, and this workspace's
# quorumhub binary, each with exactly the shared libraries it loads, FROM
# scratch. One image serves the controller and the compute nodes
# (deploy/slurm/docker-compose.yml picks the daemon).
#
# Usage: deploy/slurm/build-image.sh [TAG]      (default TAG: dev)
#   QH_BIN_DIR=DIR   take quorumhub from DIR (default target/release)
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
tag=${1:-dev}
bin_dir=${QH_BIN_DIR:-$root/target/release}
die() { echo "slurm build-image: $*" >&2; exit 1; }
command -v docker >/dev/null || die "docker is required"
[ -x "$bin_dir/quorumhub" ] || die "$bin_dir/quorumhub is missing; build it (cargo build --release -p quorumhub)"
if [ ! -x /usr/sbin/slurmd-wlm ] || [ ! -x /usr/sbin/munged ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "slurm build-image: installing Slurm and munge from the Debian archive ..." >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q slurmctld slurmd slurm-client munge >/dev/null 2>&1 \
      || { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q slurmctld slurmd slurm-client munge >/dev/null; } \
      || die "apt-get install slurmctld slurmd slurm-client munge failed"
  else
    die "Slurm is missing: sudo apt-get install slurmctld slurmd slurm-client munge"
  fi
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
dest=$work/rootfs

# put SRC [DST]: SRC at DST (default: the same path) and every library ldd
# names for it. A plugin whose libraries this host lacks is left out (the
# daemons load only the plugins slurm.conf names).
put() {
  local src=$1 dst=${2:-$1} lib
  if ldd "$src" 2>/dev/null | grep -q 'not found'; then
    echo "slurm build-image: leaving out $src (needs $(ldd "$src" | grep 'not found' | awk '{print $1}' | tr '\n' ' '))" >&2
    return 0
  fi
  mkdir -p "$dest$(dirname "$dst")"
  cp -L "$src" "$dest$dst"
  for lib in $(ldd "$src" 2>/dev/null | awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\// {print $1}'); do
    [ -e "$dest$lib" ] && continue
    mkdir -p "$dest$(dirname "$lib")"
    cp -L "$lib" "$dest$lib"
  done
}

put /usr/sbin/slurmctld-wlm /usr/sbin/slurmctld
put /usr/sbin/slurmd-wlm /usr/sbin/slurmd
# slurmd runs slurmstepd by this path.
put /usr/sbin/slurmstepd-wlm /usr/sbin/slurmstepd
for b in sbatch squeue scancel sinfo scontrol srun; do put "/usr/bin/$b"; done
put /usr/sbin/munged
put /usr/bin/munge
for p in /usr/lib/x86_64-linux-gnu/slurm-wlm/*.so; do put "$p"; done
put /usr/bin/dash /bin/sh
put "$bin_dir/quorumhub" /usr/local/bin/quorumhub

mkdir -p "$dest/etc/slurm" "$dest/tmp" "$dest/run/munge" "$dest/var/lib/munge" "$dest/var/log/munge" \
  "$dest/var/spool/slurmctld" "$dest/var/spool/slurmd" "$dest/home" "$dest/var/lib/quorumhub/data"
chmod 1777 "$dest/tmp"
chmod 0755 "$dest/run/munge"
chmod 0700 "$dest/var/lib/munge" "$dest/var/log/munge" "$dest/var/lib/quorumhub/data"
printf 'root:x:0:0:root:/root:/bin/sh\n' >"$dest/etc/passwd"
printf 'root:x:0:\n' >"$dest/etc/group"
printf 'hosts: files dns\n' >"$dest/etc/nsswitch.conf"
# The daemons' start: munged in the background (root, the key root-owned
# 0400), then the Slurm daemon named by the first argument, or quorumhub,
# in the foreground.
cat >"$dest/usr/local/bin/slurm-node" <<'SH'
#!/bin/sh
set -e
# Every Slurm daemon and submit host has the key; a proxy has none.
if [ -e /etc/munge/munge.key ]; then
  /usr/sbin/munged --key-file=/etc/munge/munge.key --socket=/run/munge/munge.socket.2 --force
fi
case "$1" in
  slurmctld) exec /usr/sbin/slurmctld -D -i ;;
  slurmd) exec /usr/sbin/slurmd -D ;;
  # A hub replica or proxy on the cluster's network: quorumhub with the
  # Slurm client commands and munge beside it (a submit host).
  quorumhub) shift; exec /usr/local/bin/quorumhub "$@" ;;
  *) echo "slurm-node: give slurmctld, slurmd or quorumhub ARGS" >&2; exit 2 ;;
esac
SH
chmod 755 "$dest/usr/local/bin/slurm-node"
revision=$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)
cat >"$work/Dockerfile" <<DOCKERFILE
FROM scratch
COPY rootfs/ /
ENV PATH=/usr/local/bin:/usr/bin:/usr/sbin:/bin
LABEL org.opencontainers.image.title="quorumhub-slurm" org.opencontainers.image.revision="$revision"
ENTRYPOINT ["/usr/local/bin/slurm-node"]
DOCKERFILE
docker build -q -t "quorumhub-slurm:$tag" "$work" >/dev/null || die "docker build of quorumhub-slurm:$tag failed"
docker run --rm --entrypoint /usr/sbin/slurmctld "quorumhub-slurm:$tag" -V >/dev/null \
  || die "slurmctld does not run in quorumhub-slurm:$tag"
bytes=$(docker image inspect -f '{{.Size}}' "quorumhub-slurm:$tag")
echo "built quorumhub-slurm:$tag ($(awk -v b="$bytes" 'BEGIN {printf "%.1f", b / 1e6}') MB)"
