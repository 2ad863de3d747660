#!/usr/bin/env bash
# Starts quorumhub on the container Slurm cluster (docker-compose.yml beside
# this file): makes the shared munge key and the hubs' credentials on first
# use (deploy/slurm/secrets/, deploy/slurm/.env), the accounts servers run
# as (passwd, group: root and u1 ... u60) and the profiles (profiles.toml),
# builds quorumhub-slurm:TAG if it is missing, starts slurmctld, c1, c2,
# three hubs (--spawner slurm) and two proxies, waits until both nodes are
# idle, runs one batch job on each node (the quorumhub binary, through
# sbatch), and waits until the hubs answer through the proxies.
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
    -h|--help) sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
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
random_secret() { head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n'; }
[ -s "$here/secrets/proxy-secret" ] || (umask 077; random_secret >"$here/secrets/proxy-secret")
# The proxies run as root in their containers and read it from the mount.
chmod 0400 "$here/secrets/proxy-secret"
env_file=$here/.env
if [ ! -s "$env_file" ]; then
  (umask 077
   { echo "QUORUMHUB_CLUSTER_SECRET=$(random_secret)"
     echo "QUORUMHUB_ADMIN_TOKEN=$(random_secret)"; } >"$env_file")
fi
set -a
# shellcheck disable=SC1090
. "$env_file"
set +a
# The same accounts on every host (an HPC centre has LDAP): root, and the
# users u1 ... u60 the hubs submit servers as (sbatch --uid).
{ echo 'root:x:0:0:root:/root:/bin/sh'
  for i in $(seq 1 60); do echo "u$i:x:$((2000 + i)):$((2000 + i)):u$i:/home/u$i:/bin/sh"; done
} >"$here/passwd"
{ echo 'root:x:0:'
  for i in $(seq 1 60); do echo "u$i:x:$((2000 + i)):"; done
} >"$here/group"
# What users choose from: partitions, CPUs, memory, GPUs and time limits
# map to sbatch options (docs/operations.md, "Slurm").
cat >"$here/profiles.toml" <<'PROFILES'
# Written by deploy/slurm/up.sh.
[[profiles]]
slug = "standard"
display_name = "Standard (1 CPU, 256 MB)"
default = true
cpu_limit = 1
mem_limit = "256M"

[[profiles]]
slug = "big"
display_name = "Big (2 CPUs, 512 MB)"
cpu_limit = 2
mem_limit = "512M"
partition = "main"

[[profiles]]
slug = "short"
display_name = "Short (1 minute)"
time_limit = "1"

[[profiles]]
slug = "deaf"
display_name = "Listens on the wrong port"
description = "For the tests: the job runs, the server never answers where the hub looks"
cmd = ["/usr/local/bin/quorumhub", "singleuser", "--port", "45997"]

[[profiles]]
slug = "gpu"
display_name = "One GPU"
description = "This cluster has no GPUs: Slurm refuses the job"
gres = "gpu:1"
PROFILES

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
net=${QH_SLURM_NET:-10.233.0}
api="http://$net.31:8000/hub/api"
until [ "$(curl -sS -o /dev/null -w '%{http_code}' -H "Authorization: token $QUORUMHUB_ADMIN_TOKEN" "$api/users" 2>/dev/null)" = 200 ]; do
  [ $SECONDS -lt $deadline ] || die "the hubs do not answer at $api after ${timeout_s} s; $logs_hint"
  sleep 1
done
echo "quorumhub is up on the Slurm cluster (project $project, image quorumhub-slurm:$QH_TAG). Try:"
echo "  . deploy/slurm/.env; curl -H \"Authorization: token \$QUORUMHUB_ADMIN_TOKEN\" -X POST $api/users/u1"
echo "  curl -H \"Authorization: token \$QUORUMHUB_ADMIN_TOKEN\" -X POST $api/users/u1/server"
echo "  docker exec $ctl squeue"
echo "Stop: deploy/slurm/down.sh"
