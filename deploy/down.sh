#!/usr/bin/env bash
# Stops the three-node deployment and removes its containers, including the
# single-user server containers the hubs started. With --volumes, every
# replica's data is deleted too.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
project=quorumhub
volumes=()
for arg in "$@"; do
  case $arg in
    --volumes|-v) volumes=(--volumes) ;;
    *) echo "usage: deploy/down.sh [--volumes]" >&2; exit 2 ;;
  esac
done
env_file=$here/.env
env_args=()
if [ -f "$env_file" ]; then env_args=(--env-file "$env_file"); else
  # Let compose parse the file without secrets.
  export QUORUMHUB_CLUSTER_SECRET=unused QUORUMHUB_ADMIN_TOKEN=unused
fi
servers=$(docker ps -aq --filter label=quorumhub.cluster)
if [ -n "$servers" ]; then
  docker rm -f $servers >/dev/null
fi
docker-compose -p "$project" "${env_args[@]}" -f "$here/docker-compose.yml" down --remove-orphans "${volumes[@]}"
