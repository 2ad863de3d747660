#!/usr/bin/env bash
# In the container deployment with QH_CREDENTIALS=roles (deploy/up.sh's
# default): each role holds only its own credential, and gRPC is mutual TLS.
# From this host (which reaches the qh network through its bridge), with
# this build's hubctl:
#   - plain gRPC to a hub is refused, and so is TLS without the CA's client
#     certificate;
#   - the proxy credential, over mutual TLS, cannot administer (users list);
#   - the admin credential, over mutual TLS, can;
# and the proxies' containers hold neither the cluster secret nor the admin
# credential.
#
#   chaos-tests/credentials.sh   (the deployment up; target/release/hubctl built)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
project=${QH_PROJECT:-quorumhub}
net=${QH_NET:-10.231.0}
hubctl=${QH_HUBCTL:-$root/target/release/hubctl}
secrets=$root/deploy/secrets
die() { echo "credentials: $*" >&2; exit 1; }
[ -x "$hubctl" ] || die "$hubctl is missing: cargo build --release -p quorumhub"
[ -s deploy/hub.env ] || die "the deployment runs with QH_CREDENTIALS=legacy: nothing to check"
# shellcheck disable=SC1091
. deploy/.env
hub="$net.241:7000,$net.242:7000,$net.243:7000"
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
(umask 077; printf '%s\n' "$QUORUMHUB_CLUSTER_SECRET" >"$work/cluster-secret")
tls=(--grpc-tls-cert "$secrets/node.pem" --grpc-tls-key "$secrets/node.key" --grpc-tls-ca "$secrets/ca.pem")
ctl() { env -u QUORUMHUB_CLUSTER_SECRET "$hubctl" --hub "$hub" --timeout-ms 3000 "$@" 2>&1; }

out=$(ctl --cluster-secret-file "$work/cluster-secret" status) \
  && die "plain gRPC with the cluster secret was answered: $out"
# A certificate from another CA: the hubs must refuse the handshake.
(cd "$work" && openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 \
  -subj /CN=intruder -keyout other.key -out other.pem -addext basicConstraints=critical,CA:FALSE \
  -addext "subjectAltName=IP:$net.241" >/dev/null 2>&1) || die "openssl failed"
chmod 600 "$work/other.key"
out=$(ctl --admin-secret-file "$secrets/admin-secret" --grpc-tls-cert "$work/other.pem" \
  --grpc-tls-key "$work/other.key" --grpc-tls-ca "$secrets/ca.pem" users list) \
  && die "a client certificate from another CA was accepted: $out"
out=$(ctl --admin-secret-file "$secrets/proxy-secret" "${tls[@]}" users list) \
  && die "the proxy credential administered the cluster: $out"
grep -qi "admin" <<<"$out" || die "the proxy credential was refused, but not for its role: $out"
out=$(ctl --admin-secret-file "$secrets/admin-secret" "${tls[@]}" users list) \
  || die "the admin credential over mutual TLS was refused: $out"

for p in proxy1 proxy2; do
  c=${project}_${p}_1
  env_list=$(docker inspect -f '{{range .Config.Env}}{{println .}}{{end}}' "$c")
  grep -q '^QUORUMHUB_CLUSTER_SECRET=' <<<"$env_list" && die "$p holds the cluster secret"
  mounts=$(docker inspect -f '{{range .Mounts}}{{println .Destination}}{{end}}' "$c")
  grep -q 'admin-secret' <<<"$mounts" && die "$p holds the admin credential"
done
echo "credentials: plain gRPC and a foreign client certificate refused; the proxy credential cannot administer, the admin one can; the proxies hold neither the cluster secret nor the admin credential"
