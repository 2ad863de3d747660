#!/usr/bin/env bash
# Starts the container Slurm cluster (docker-compose.yml beside this file):
# makes the shared munge key on first use (deploy/slurm/secrets/, mode 400),
# builds quorumhub-slurm:TAG if it is missing, starts slurmctld, c1 and c2,
# waits until both nodes are idle, and runs one batch job on each node (the
# quorumhub binary, through sbatch) to show that jobs run there.
#
# Usage: deploy/slurm/up.sh [--build]
#   QH_TAG=dev                   image tag (deploy/slurm/build-image.sh TAG)
#   QH_SLURM_PROJECT=quorumhub-slurm   compose project
#   QH_SLURM_NET=10.233.0        the cluster's network is QH_SLURM_NET.0/24
#   QH_UP_TIMEOUT_S=60           how long to wait for the nodes and the jobs
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
export QH_TAG=${QH_TAG:-dev}
project=${QH_SLURM_PROJECT:-quorumhub-slurm}
timeout_s=${QH_UP_TIMEOUT_S:-60}
die() { echo "slurm up: $*" >&2; exit 1; }
build=0
for arg in "$@"; do
  case $arg in
    --build) build=1 ;;
    -h|--help) sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument '$arg' (usage: deploy/slurm/up.sh [--build])" ;;
  esac
done
for tool in docker docker-compose; do command -v "$tool" >/dev/null || die "$tool is required"; done
docker info >/dev/null 2>&1 || die "the Docker engine is not reachable (docker info failed)"

# munge: one key for every daemon, owned by root (munged runs as root in
# the image), readable by nobody else.
key=$here/secrets/munge.key
if [ ! -s "$key" ]; then
  (umask 077; mkdir -p "$here/secrets"; head -c 1024 /dev/urandom >"$key")
fi
chmod 0400 "$key"

if [ $build = 1 ] || ! docker image inspect "quorumhub-slurm:$QH_TAG" >/dev/null 2>&1; then
  "$here/build-image.sh" "$QH_TAG" || die "building quorumhub-slurm:$QH_TAG failed"
fi
compose() { docker-compose -p "$project" -f "$here/docker-compose.yml" "$@"; }
compose up -d || die "docker-compose up failed"
ctl="${project}_slurmctld_1"
logs_hint="see: docker-compose -p $project -f $here/docker-compose.yml logs"

deadline=$((SECONDS + timeout_s))
until [ "$(docker exec "$ctl" sinfo -h -o '%t %D' 2>/dev/null)" = "idle 2" ]; do
  [ $SECONDS -lt $deadline ] || die "the nodes are not both idle after ${timeout_s} s: $(docker exec "$ctl" sinfo -h -N -o '%N %t' 2>&1 | tr '\n' ' '); $logs_hint"
  sleep 1
done
jobs=()
for node in c1 c2; do
  id=$(docker exec "$ctl" sbatch --parsable -w "$node" -o /dev/null --wrap 'exec /usr/local/bin/quorumhub --version') \
    || die "sbatch refused a job on $node"
  jobs+=("${id%%;*}")
done
for id in "${jobs[@]}"; do
  until state=$(docker exec "$ctl" squeue -h -t all -j "$id" -o '%T %B') && [[ $state == COMPLETED* ]]; do
    [[ $state == FAILED* || $state == CANCELLED* || $state == TIMEOUT* || $state == NODE_FAIL* ]] \
      && die "job $id ended $state; $logs_hint"
    [ $SECONDS -lt $deadline ] || die "job $id is still '$state' after ${timeout_s} s; $logs_hint"
    sleep 1
  done
  echo "slurm up: job $id ran on ${state#COMPLETED }"
done
docker exec "$ctl" sinfo -N -o '%N %P %t %c %m'
echo "The Slurm cluster is up (project $project, image quorumhub-slurm:$QH_TAG). Try:"
echo "  docker exec $ctl sinfo"
echo "  docker exec $ctl sbatch --wrap 'exec /usr/local/bin/quorumhub --version'"
echo "Stop: deploy/slurm/down.sh"
