#!/usr/bin/env bash
# In the container deployment (HAProxy -> proxies -> hubs): failed sign-ins
# from one client do not lock out another. The two clients are this host
# seen from two networks: it reaches the LB once at its address on the `qh`
# network and once on the `front` network, so the LB sees two different
# source addresses (the two bridges' gateways), adds each to
# X-Forwarded-For, and the proxies and hubs must key the limiter on it.
#
#   chaos-tests/login-limit.sh     (the deployment up: deploy/up.sh)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
project=${QH_PROJECT:-quorumhub}
die() { echo "login-limit: $*" >&2; exit 1; }
for tool in docker curl; do command -v $tool >/dev/null || die "$tool is required"; done
[ -f deploy/.env ] || die "deploy/.env is missing: run deploy/up.sh first"
# shellcheck disable=SC1091
. deploy/.env
lb=${project}_lb_1
ip_on() { docker inspect -f "{{with index .NetworkSettings.Networks \"${project}_$1\"}}{{.IPAddress}}{{end}}" "$lb"; }
a=$(ip_on qh); b=$(ip_on front)
[ -n "$a" ] && [ -n "$b" ] || die "cannot find the LB's addresses (is the deployment up?)"
user=limit-$RANDOM
pw=right-$RANDOM-$RANDOM
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT

curl -fsS -o /dev/null -X POST -H "Authorization: token $QUORUMHUB_ADMIN_TOKEN" \
  "http://$a:8000/hub/api/users/$user" || die "cannot create $user through the LB"
echo "$pw" | docker exec -i "${project}_hub1_1" hubctl users set-password "$user" >/dev/null \
  || die "hubctl users set-password failed"

# One sign-in attempt from the LB address $1 as user $3 (default $user) with
# password $2: the status.
attempt() {
  local jar=$work/jar-$1 page xsrf
  page=$(curl -fsS -c "$jar" -b "$jar" "http://$1:8000/hub/login") || die "GET /hub/login via $1 failed"
  xsrf=$(printf '%s' "$page" | sed -n 's/.*name="_xsrf" value="\([^"]*\)".*/\1/p' | head -1)
  [ -n "$xsrf" ] || die "no _xsrf in the login page"
  curl -sS -o /dev/null -w '%{http_code}' -c "$jar" -b "$jar" \
    --data-urlencode "username=${3:-$user}" --data-urlencode "password=$2" \
    --data-urlencode "_xsrf=$xsrf" "http://$1:8000/hub/login"
}

# Client A guesses at other accounts (the per-account limit is not what is
# tested here: it holds for every client, by design).
for i in 1 2 3 4 5; do
  code=$(attempt "$a" "wrong-$i" "ghost-$i-$RANDOM")
  [ "$code" = 403 ] || die "failed sign-in $i from client A answered $code, not 403"
done
code=$(attempt "$a" "$pw")
[ "$code" = 429 ] || die "client A's 6th sign-in answered $code, not 429: the limiter did not hold"
code=$(attempt "$b" "$pw")
[ "$code" = 302 ] || die "client B, with the right password, got $code after client A's failures: one client locked out another"
echo "login-limit: 5 failed sign-ins from $a's side locked out that client (429) and not the other (302)"
