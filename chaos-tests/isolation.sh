#!/usr/bin/env bash
# In the container deployment: from a user's server, only the proxies and
# the load balancer answer; no hub port (gRPC 7000, HTTP 8081) does, on any
# of a hub's addresses. A real server is started through the API; the
# checks run curl (this host's) inside that server container's network
# namespace (nsenter -n), so they see exactly what the server can reach.
#
#   chaos-tests/isolation.sh     (the deployment up: deploy/up.sh; root)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
project=${QH_PROJECT:-quorumhub}
die() { echo "isolation: $*" >&2; exit 1; }
for tool in docker curl nsenter; do command -v $tool >/dev/null || die "$tool is required"; done
[ -f deploy/.env ] || die "deploy/.env is missing: run deploy/up.sh first"
# shellcheck disable=SC1091
. deploy/.env
ip_of() { docker inspect -f "{{with index .NetworkSettings.Networks \"${project}_$2\"}}{{.IPAddress}}{{end}}" "${project}_$1_1"; }
lb=$(ip_of lb qh)
[ -n "$lb" ] || die "cannot find the LB's address (is the deployment up?)"
api="http://$lb:8000/hub/api"
auth="Authorization: token $QUORUMHUB_ADMIN_TOKEN"
user=iso-$RANDOM
cleanup() {
  curl -sS -o /dev/null -X DELETE -H "$auth" "$api/users/$user/server" || true
  sleep 1
  curl -sS -o /dev/null -X DELETE -H "$auth" "$api/users/$user" || true
}
trap cleanup EXIT

curl -fsS -o /dev/null -X POST -H "$auth" "$api/users/$user" || die "cannot create $user"
curl -fsS -o /dev/null -X POST -H "$auth" "$api/users/$user/server" || die "cannot start $user's server"
for _ in $(seq 1 60); do
  if curl -fsS -H "$auth" "$api/users/$user" | grep -q '"ready":true'; then break; fi
  sleep 0.5
done
curl -fsS -H "$auth" "$api/users/$user" | grep -q '"ready":true' || die "$user's server did not become ready"
container=$(docker ps -q --filter "label=quorumhub.user=$user")
[ -n "$container" ] || die "no container labelled quorumhub.user=$user"
pid=$(docker inspect -f '{{.State.Pid}}' "$container")
[ "$pid" -gt 0 ] || die "the server container has no process"

# curl from inside the server's network namespace: the HTTP status, or 000.
from_server() { nsenter -t "$pid" -n curl -sS -o /dev/null -m 2 -w '%{http_code}' "$1" 2>/dev/null || true; }

checked=0
for h in hub1 hub2 hub3; do
  for net in qh users; do
    ip=$(ip_of "$h" "$net")
    [ -n "$ip" ] || die "$h has no address on the $net network"
    for port in 7000 8081; do
      code=$(from_server "http://$ip:$port/hub/health")
      [ "$code" = 000 ] || die "from a user's server, $h's port $port at $ip ($net) answered HTTP $code"
      checked=$((checked + 1))
    done
  done
done
for p in proxy1 proxy2; do
  ip=$(ip_of "$p" users)
  code=$(from_server "http://$ip:8000/_proxy/health")
  [ "$code" = 200 ] || die "from a user's server, $p at $ip answered $code, not 200"
done
lb_users=$(ip_of lb users)
code=$(from_server "http://$lb_users:8000/hub/api/")
[ "$code" = 200 ] || die "from a user's server, the hub API through the LB ($lb_users) answered $code, not 200"
echo "isolation: from $user's server no hub port answered ($checked tried: gRPC and HTTP, on each hub's qh and users addresses); both proxies and the hub API through the LB did"
