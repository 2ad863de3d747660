#!/usr/bin/env bash
# Stops quorumhub and the container Slurm cluster and removes their
# containers and network (the secrets in deploy/slurm/ stay).
#   QH_SLURM_PROJECT=quorumhub-slurm   compose project, as for up.sh
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
project=${QH_SLURM_PROJECT:-quorumhub-slurm}
command -v docker-compose >/dev/null || { echo "slurm down: docker-compose is required" >&2; exit 1; }
# The compose file needs the hubs' credentials to be read at all.
if [ -s "$here/.env" ]; then
  set -a
  # shellcheck disable=SC1091
  . "$here/.env"
  set +a
fi
export QUORUMHUB_CLUSTER_SECRET=${QUORUMHUB_CLUSTER_SECRET:-unset} QUORUMHUB_ADMIN_TOKEN=${QUORUMHUB_ADMIN_TOKEN:-unset}
docker-compose -p "$project" -f "$here/docker-compose.yml" down --remove-orphans
