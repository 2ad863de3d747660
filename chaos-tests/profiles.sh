#!/usr/bin/env bash
# In the container deployment: two profiles start two different images
# with the Docker spawner. Users start servers through the load balancer
# with user_options.profile; each container is checked with docker inspect
# (its image, its memory and CPU limits, the profile's environment), and
# each server answers through the proxies. A profile the hubs do not offer
# is refused with JupyterHub's 400 and the profiles they do.
#
#   chaos-tests/profiles.sh     (the deployment up: deploy/up.sh, whose
#                                deploy/profiles.toml offers "standard" and
#                                "alt")
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
project=${QH_PROJECT:-quorumhub}
die() { echo "profiles: $*" >&2; exit 1; }
for tool in docker curl; do command -v $tool >/dev/null || die "$tool is required"; done
[ -f deploy/.env ] || die "deploy/.env is missing: run deploy/up.sh first"
[ -z "${QH_PROFILES_FILE:-}" ] || die "QH_PROFILES_FILE is set: this checks the profiles deploy/up.sh writes"
# shellcheck disable=SC1091
. deploy/.env
tag=${QH_TAG:-dev}
lb="http://127.0.0.1:${QH_HTTP_PORT:-8000}"
api="$lb/hub/api"
auth="Authorization: token $QUORUMHUB_ADMIN_TOKEN"
std=prof-std-$RANDOM
alt=prof-alt-$RANDOM
cleanup() {
  for u in "$std" "$alt"; do
    curl -sS -o /dev/null -X DELETE -H "$auth" "$api/users/$u/server" || true
  done
  sleep 1
  for u in "$std" "$alt"; do
    curl -sS -o /dev/null -X DELETE -H "$auth" "$api/users/$u" || true
  done
}
trap cleanup EXIT

for u in "$std" "$alt"; do
  curl -fsS -o /dev/null -X POST -H "$auth" "$api/users/$u" || die "cannot create $u"
done
# Not offered: 400 naming the profiles that are.
body=$(curl -sS -X POST -H "$auth" -H 'content-type: application/json' \
  -d '{"user_options": {"profile": "huge"}}' -w ' %{http_code}' "$api/users/$std/server")
[ "${body##* }" = 400 ] || die "an unknown profile got ${body##* }, not 400: $body"
grep -q 'No such profile: huge. Options include: standard, alt' <<<"$body" \
  || die "the refusal does not name the profiles: $body"
[ -z "$(docker ps -aq --filter "label=quorumhub.user=$std")" ] || die "a refused start left a container"

start() {
  curl -fsS -o /dev/null -X POST -H "$auth" -H 'content-type: application/json' \
    -d "{\"user_options\": {\"profile\": \"$2\"}}" "$api/users/$1/server" \
    || die "cannot start $1's server with profile $2"
}
start "$std" standard
start "$alt" alt
for u in "$std" "$alt"; do
  for _ in $(seq 1 60); do
    if curl -fsS -H "$auth" "$api/users/$u" | grep -q '"ready":true'; then break; fi
    sleep 0.5
  done
  curl -fsS -H "$auth" "$api/users/$u" | grep -q '"ready":true' || die "$u's server did not become ready"
done

inspect() {
  local c
  c=$(docker ps -q --filter "label=quorumhub.user=$1")
  [ -n "$c" ] || die "no container labelled quorumhub.user=$1"
  docker inspect -f "$2" "$c"
}
image=$(inspect "$std" '{{.Config.Image}}')
[ "$image" = "quorumhub:$tag" ] || die "the standard profile ran $image, not quorumhub:$tag"
[ "$(inspect "$std" '{{.HostConfig.Memory}} {{.HostConfig.NanoCpus}}')" = "0 0" ] \
  || die "the standard profile has limits: $(inspect "$std" '{{.HostConfig.Memory}} {{.HostConfig.NanoCpus}}')"
image=$(inspect "$alt" '{{.Config.Image}}')
[ "$image" = "quorumhub-alt:$tag" ] || die "the alt profile ran $image, not quorumhub-alt:$tag"
limits=$(inspect "$alt" '{{.HostConfig.Memory}} {{.HostConfig.NanoCpus}}')
[ "$limits" = "268435456 1000000000" ] || die "the alt profile's limits are '$limits', not 256 MiB and 1 CPU"
env=$(inspect "$alt" '{{range .Config.Env}}{{println .}}{{end}}')
for want in QH_IMAGE=alt QH_PROFILE=alt MEM_LIMIT=268435456 CPU_LIMIT=1; do
  grep -qx "$want" <<<"$env" || die "$want is not in the alt server's environment"
done
if inspect "$std" '{{range .Config.Env}}{{println .}}{{end}}' | grep -q '^QH_IMAGE='; then
  die "the standard server runs the alternative image's environment"
fi
# Both answer through the proxies (the LB in front of them).
for u in "$std" "$alt"; do
  code=$(curl -sS -o /dev/null -w '%{http_code}' -H "$auth" "$lb/user/$u/api/status")
  [ "$code" = 200 ] || die "$u's server answered $code through the proxies, not 200"
done
echo "profiles: 'standard' ran quorumhub:$tag, 'alt' ran quorumhub-alt:$tag with 256 MiB and 1 CPU; both answer through the proxies; an unknown profile got 400"
