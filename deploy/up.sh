#!/usr/bin/env bash
# Starts the three-node deployment: writes deploy/.env with fresh secrets on
# first use, builds the images if they are missing, starts everything and
# waits until hubctl reports 3 voters (all reachable) and a leader, and the
# load balancer answers.
#
# Usage: deploy/up.sh [--build]      --build: rebuild the images first
#   QH_TAG=dev            image tag (deploy/build-images.sh TAG)
#   QH_HTTP_PORT=8000     the load balancer's port on 127.0.0.1
#   QH_PROJECT=quorumhub  compose project name (containers {project}_hub1_1, ...)
#   QH_UP_TIMEOUT_S=60    how long to wait for the cluster and the LB
#   QH_NET=10.231.0       the qh network is QH_NET.0/24, the users network
#                         QH_USERS_NET.0.0/16 (QH_USERS_NET=10.232)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
export QH_TAG=${QH_TAG:-dev}
export QH_HTTP_PORT=${QH_HTTP_PORT:-8000}
export QH_PROJECT=${QH_PROJECT:-quorumhub}
project=$QH_PROJECT
timeout_s=${QH_UP_TIMEOUT_S:-60}
env_file=$here/.env
compose_file=$here/docker-compose.yml

die() { echo "up: $*" >&2; exit 1; }

build=0
for arg in "$@"; do
  case $arg in
    --build) build=1 ;;
    -h|--help) sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument '$arg' (usage: deploy/up.sh [--build])" ;;
  esac
done
for tool in docker docker-compose curl; do
  command -v "$tool" >/dev/null || die "$tool is required"
done
docker info >/dev/null 2>&1 || die "the Docker engine is not reachable (docker info failed)"

# ---- secrets: deploy/.env (mode 600), created once, reused afterwards ----
random_secret() { head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n'; }  # 64 hex chars
if [ ! -f "$env_file" ]; then
  (umask 077; : >"$env_file")
  echo "up: writing new secrets to $env_file"
fi
for key in QUORUMHUB_CLUSTER_SECRET QUORUMHUB_ADMIN_TOKEN; do
  if ! grep -q "^$key=." "$env_file"; then
    echo "$key=$(random_secret)" >>"$env_file"
  fi
done
chmod 600 "$env_file"
set -a
# shellcheck disable=SC1090
. "$env_file"
set +a
if [ "${#QUORUMHUB_CLUSTER_SECRET}" -lt 32 ]; then
  die "QUORUMHUB_CLUSTER_SECRET in $env_file is shorter than 32 characters; delete the line to get a new one"
fi

# ---- images ----
if [ $build = 1 ] || ! docker image inspect "quorumhub:$QH_TAG" >/dev/null 2>&1 \
  || ! docker image inspect "quorumhub-lb:$QH_TAG" >/dev/null 2>&1; then
  echo "up: building quorumhub:$QH_TAG and quorumhub-lb:$QH_TAG"
  "$here/build-images.sh" "$QH_TAG" || die "building the images failed"
fi

compose() { docker-compose -p "$project" --env-file "$env_file" -f "$compose_file" "$@"; }

compose up -d || die "docker-compose up failed (is 127.0.0.1:$QH_HTTP_PORT already in use?)"

# ---- wait: 3 reachable voters and a leader, then the LB ----
hub1="${project}_hub1_1"
# The hubs' fixed addresses on the qh network (docker-compose.yml, QH_NET).
net=${QH_NET:-10.231.0}
hubctl() { docker exec "$hub1" /usr/local/bin/hubctl --hub "$net.241:7000,$net.242:7000,$net.243:7000" \
  --timeout-ms 2000 "$@"; }
# healthy JSON: a leader, 3 voters, and all 3 voters reachable
healthy() {
  if command -v jq >/dev/null; then
    jq -e '.leader != null and .voters == 3
           and ([.members[] | select(.voter and .reachable)] | length) == 3' >/dev/null
  else
    local s; s=$(tr -d ' \n')
    grep -q '"leader":[0-9]' <<<"$s" && grep -q '"voters":3' <<<"$s" \
      && [ "$(grep -o '"reachable":true' <<<"$s" | wc -l)" -ge 3 ]
  fi
}
logs_hint="see: docker-compose -p $project -f $compose_file logs"
echo "up: waiting (at most ${timeout_s} s) for 3 voters and a leader ..."
deadline=$((SECONDS + timeout_s))
status=
until status=$(hubctl --output json status 2>&1) && healthy <<<"$status"; do
  if [ "$(docker inspect -f '{{.State.Running}}' "$hub1" 2>/dev/null)" != true ]; then
    die "$hub1 is not running; $logs_hint hub1"
  fi
  if [ $SECONDS -ge $deadline ]; then
    echo "$status" >&2
    die "no leader with 3 reachable voters after ${timeout_s} s; $logs_hint hub1 hub2 hub3"
  fi
  sleep 1
done
echo "up: waiting for the load balancer on 127.0.0.1:$QH_HTTP_PORT ..."
until curl -sf -m 2 "http://127.0.0.1:$QH_HTTP_PORT/hub/api/" >/dev/null; do
  if [ $SECONDS -ge $deadline ]; then
    die "the load balancer does not answer GET http://127.0.0.1:$QH_HTTP_PORT/hub/api/ after ${timeout_s} s; $logs_hint lb proxy1 proxy2"
  fi
  sleep 1
done

hubctl status
cat <<MSG

quorumhub is up behind http://127.0.0.1:$QH_HTTP_PORT (3 hub replicas, 2 proxies, HAProxy; project $project, images :$QH_TAG).
Try:
  set -a; . $env_file; set +a
  curl -H "Authorization: token \$QUORUMHUB_ADMIN_TOKEN" -X POST http://127.0.0.1:$QH_HTTP_PORT/hub/api/users/alice
  curl -H "Authorization: token \$QUORUMHUB_ADMIN_TOKEN" -X POST http://127.0.0.1:$QH_HTTP_PORT/hub/api/users/alice/server
  curl http://127.0.0.1:$QH_HTTP_PORT/user/alice/api/status
  docker exec $hub1 hubctl status            # members, leader, lag
  docker-compose -p $project -f $compose_file logs -f
Stop: deploy/down.sh   (add --volumes to delete every replica's data)
MSG
