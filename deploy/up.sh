#!/usr/bin/env bash
# Starts the three-node deployment: builds the images if they are missing,
# writes deploy/.env with fresh secrets on first use, starts everything and
# waits until hubctl reports 3 voters and a leader and the load balancer
# answers.
#   QH_TAG (default dev)  image tag     QH_HTTP_PORT (default 8000)  LB port
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
export QH_TAG=${QH_TAG:-dev}
export QH_HTTP_PORT=${QH_HTTP_PORT:-8000}
project=quorumhub
env_file=$here/.env

random_hex() { head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n'; }
if [ ! -f "$env_file" ]; then
  (umask 077; {
    echo "QUORUMHUB_CLUSTER_SECRET=$(random_hex)"
    echo "QUORUMHUB_ADMIN_TOKEN=$(random_hex)"
  } >"$env_file")
  echo "wrote new secrets to $env_file"
fi
set -a; . "$env_file"; set +a

if ! docker image inspect "quorumhub:$QH_TAG" >/dev/null 2>&1 \
  || ! docker image inspect "quorumhub-lb:$QH_TAG" >/dev/null 2>&1; then
  "$here/build-images.sh" "$QH_TAG"
fi

docker-compose -p "$project" --env-file "$env_file" -f "$here/docker-compose.yml" up -d

echo "waiting for 3 voters and a leader ..."
deadline=$((SECONDS + 90))
until docker exec "${project}_hub1_1" /usr/local/bin/hubctl --hub hub1:7000,hub2:7000,hub3:7000 \
    --output json status 2>/dev/null | tr -d ' \n' | grep -q '"leader":[0-9]' \
  && docker exec "${project}_hub1_1" /usr/local/bin/hubctl --hub hub1:7000 --output json status 2>/dev/null \
    | tr -d ' \n' | grep -q '"voters":3'; do
  if [ $SECONDS -ge $deadline ]; then
    echo "up: the cluster did not elect a leader within 90 s; see: docker-compose -p $project -f $here/docker-compose.yml logs hub1 hub2 hub3" >&2
    exit 1
  fi
  sleep 1
done
until curl -sf "http://127.0.0.1:$QH_HTTP_PORT/hub/api/" >/dev/null; do
  if [ $SECONDS -ge $deadline ]; then
    echo "up: the load balancer does not answer on 127.0.0.1:$QH_HTTP_PORT" >&2
    exit 1
  fi
  sleep 1
done
docker exec "${project}_hub1_1" /usr/local/bin/hubctl --hub hub1:7000 status
cat <<MSG

quorumhub is up behind http://127.0.0.1:$QH_HTTP_PORT (3 hub replicas, 2 proxies, 1 load balancer).
Admin token: in $env_file (QUORUMHUB_ADMIN_TOKEN). Try:
  set -a; . $env_file; set +a
  curl -H "Authorization: token \$QUORUMHUB_ADMIN_TOKEN" -X POST http://127.0.0.1:$QH_HTTP_PORT/hub/api/users/alice
  curl -H "Authorization: token \$QUORUMHUB_ADMIN_TOKEN" -X POST http://127.0.0.1:$QH_HTTP_PORT/hub/api/users/alice/server
  curl http://127.0.0.1:$QH_HTTP_PORT/user/alice/api/status
  docker exec ${project}_hub1_1 hubctl --hub hub1:7000 status
Stop: deploy/down.sh (add --volumes to delete all data)
MSG
