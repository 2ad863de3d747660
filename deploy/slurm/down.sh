#!/usr/bin/env bash
# Stops the container Slurm cluster and removes its containers and network.
#   QH_SLURM_PROJECT=quorumhub-slurm   compose project, as for up.sh
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
project=${QH_SLURM_PROJECT:-quorumhub-slurm}
command -v docker-compose >/dev/null || { echo "slurm down: docker-compose is required" >&2; exit 1; }
docker-compose -p "$project" -f "$here/docker-compose.yml" down --remove-orphans
