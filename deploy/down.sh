#!/usr/bin/env bash
# Stops the three-node deployment and removes its containers and network,
# including the single-user server containers the hubs started (label
# quorumhub.cluster). With --volumes, every replica's data is deleted too.
#
# Usage: deploy/down.sh [--volumes]
#   QH_PROJECT=quorumhub  compose project name, as for up.sh
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
export QH_PROJECT=${QH_PROJECT:-quorumhub}
project=$QH_PROJECT
env_file=$here/.env
compose_file=$here/docker-compose.yml

die() { echo "down: $*" >&2; exit 1; }

volumes=()
for arg in "$@"; do
  case $arg in
    --volumes|-v) volumes=(--volumes) ;;
    -h|--help) sed -n '2,7p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument '$arg' (usage: deploy/down.sh [--volumes])" ;;
  esac
done
for tool in docker docker-compose; do
  command -v "$tool" >/dev/null || die "$tool is required"
done
docker info >/dev/null 2>&1 || die "the Docker engine is not reachable (docker info failed)"

# The compose file names the env files deploy/up.sh writes; parse it even
# where up.sh never ran.
for f in hub.env proxy.env; do [ -f "$here/$f" ] || (umask 077; : >"$here/$f"); done
env_args=()
if [ -f "$env_file" ]; then
  env_args=(--env-file "$env_file")
  set -a
  # shellcheck disable=SC1090
  . "$env_file"
  set +a
fi
# The compose file insists on the secrets; "down" does not need real ones.
export QUORUMHUB_CLUSTER_SECRET=${QUORUMHUB_CLUSTER_SECRET:-unused-by-down}
export QUORUMHUB_ADMIN_TOKEN=${QUORUMHUB_ADMIN_TOKEN:-unused-by-down}

compose() { docker-compose -p "$project" "${env_args[@]}" -f "$compose_file" "$@"; }

# The hubs first, so that no new single-user server is spawned meanwhile;
# then the servers (any container labelled quorumhub.cluster: they are
# attached to the project's network, which compose cannot remove while they
# are); then everything else.
compose stop hub1 hub2 hub3 || die "docker-compose stop failed"
servers=$(docker ps -aq --filter label=quorumhub.cluster)
if [ -n "$servers" ]; then
  echo "down: removing $(wc -w <<<"$servers") single-user server container(s)"
  # shellcheck disable=SC2086
  docker rm -f $servers >/dev/null || die "could not remove the server containers: $servers"
fi
compose down --remove-orphans "${volumes[@]}" || die "docker-compose down failed"
