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
#   QH_CREDENTIALS=roles  roles: a credential per role and gRPC over mutual
#                         TLS (deploy/secrets/); legacy: the cluster secret
#                         for everything over plain gRPC (what the previous
#                         release's images know; the upgrade test uses it)
#   QH_NET=10.231.0       the qh network is QH_NET.0/24, the users network
#                         QH_USERS_NET.0.0/16 (QH_USERS_NET=10.232)
#   QH_PROFILES_FILE=F    the hubs' profiles (a TOML file of [[profiles]]);
#                         default: deploy/profiles.toml, written here for
#                         the images :QH_TAG (quorumhub and quorumhub-alt)
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
    -h|--help) sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
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

# ---- credentials: deploy/secrets/ (made once), and per-role env files ----
# roles (default): the proxies hold only the proxy credential, hubctl the
# admin one, and all gRPC is mutual TLS (one CA; one certificate for the
# qh addresses). legacy: the cluster secret for every role over plain gRPC,
# as the previous release's images need (chaos-tests/upgrade.sh).
mode=${QH_CREDENTIALS:-roles}
case $mode in roles|legacy) ;; *) die "QH_CREDENTIALS must be roles or legacy, not '$mode'" ;; esac
net=${QH_NET:-10.231.0}
secrets=$here/secrets
(umask 077; mkdir -p "$secrets")
for f in proxy-secret admin-secret; do
  [ -s "$secrets/$f" ] || (umask 077; random_secret >"$secrets/$f")
done
if [ ! -s "$secrets/node.pem" ] || [ ! -s "$secrets/ca.pem" ]; then
  command -v openssl >/dev/null || die "openssl is required to make the gRPC certificates"
  ca_key=$here/.ca-key.pem
  (umask 077
   openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 3650 \
     -subj /CN=quorumhub-deployment-ca -keyout "$ca_key" -out "$secrets/ca.pem" \
     -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign
   openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=quorumhub-node \
     -keyout "$secrets/node.key" -out "$secrets/node.csr"
   printf '%s\n' "basicConstraints=critical,CA:FALSE" "keyUsage=critical,digitalSignature" \
     "extendedKeyUsage=serverAuth,clientAuth" \
     "subjectAltName=IP:$net.241,IP:$net.242,IP:$net.243,IP:$net.231,IP:$net.232" >"$secrets/node.ext"
   openssl x509 -req -in "$secrets/node.csr" -CA "$secrets/ca.pem" -CAkey "$ca_key" -CAcreateserial \
     -days 825 -extfile "$secrets/node.ext" -out "$secrets/node.pem") >/dev/null 2>&1 \
    || die "openssl could not make the gRPC certificates"
  rm -f "$secrets/node.csr" "$secrets/node.ext" "$secrets/ca.srl"
  chmod 644 "$secrets/ca.pem" "$secrets/node.pem"
fi
in_container=/run/quorumhub/secrets
tls_env() {
  echo "QUORUMHUB_GRPC_TLS_CERT=$in_container/node.pem"
  echo "QUORUMHUB_GRPC_TLS_KEY=$in_container/node.key"
  echo "QUORUMHUB_GRPC_TLS_CA=$in_container/ca.pem"
}
(umask 077
 if [ "$mode" = roles ]; then
   { echo "QUORUMHUB_PROXY_SECRET_FILE=$in_container/proxy-secret"
     echo "QUORUMHUB_ADMIN_SECRET_FILE=$in_container/admin-secret"
     tls_env; } >"$here/hub.env"
   { echo "QUORUMHUB_PROXY_SECRET_FILE=$in_container/proxy-secret"; tls_env; } >"$here/proxy.env"
 else
   : >"$here/hub.env"
   echo "QUORUMHUB_CLUSTER_SECRET=$QUORUMHUB_CLUSTER_SECRET" >"$here/proxy.env"
 fi)

# ---- images ----
if [ $build = 1 ] || ! docker image inspect "quorumhub:$QH_TAG" >/dev/null 2>&1 \
  || ! docker image inspect "quorumhub-alt:$QH_TAG" >/dev/null 2>&1 \
  || ! docker image inspect "quorumhub-lb:$QH_TAG" >/dev/null 2>&1; then
  echo "up: building quorumhub:$QH_TAG, quorumhub-alt:$QH_TAG and quorumhub-lb:$QH_TAG"
  "$here/build-images.sh" "$QH_TAG" || die "building the images failed"
fi

# ---- profiles: deploy/profiles.toml for these images, unless QH_PROFILES_FILE ----
if [ -n "${QH_PROFILES_FILE:-}" ]; then
  [ -f "$QH_PROFILES_FILE" ] || die "QH_PROFILES_FILE=$QH_PROFILES_FILE is not a file"
  QH_PROFILES_FILE=$(cd "$(dirname "$QH_PROFILES_FILE")" && pwd)/$(basename "$QH_PROFILES_FILE")
  export QH_PROFILES_FILE
else
  cat >"$here/profiles.toml" <<PROFILES
# Written by deploy/up.sh for the images :$QH_TAG; set QH_PROFILES_FILE to
# use your own. Users choose on the spawn page (or user_options.profile).
[[profiles]]
slug = "standard"
display_name = "Standard"
description = "The quorumhub single-user server (image quorumhub:$QH_TAG)"
default = true

[[profiles]]
slug = "alt"
display_name = "Alternative image, 1 CPU, 256 MiB"
description = "A second image (quorumhub-alt:$QH_TAG), limited to 1 CPU and 256 MiB"
image = "quorumhub-alt:$QH_TAG"
cpu_limit = 1
mem_limit = "256M"
env = { QH_PROFILE = "alt" }
PROFILES
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
