#!/usr/bin/env bash
# The chaos suite: builds the release binaries and images, brings up the
# three-node deployment (deploy/) on its own port, runs qh-chaos against it
# and tears everything down again, whatever happens.
#
#   chaos-tests/run.sh                 the bounded run CI does
#   QH_CHAOS_FAULTS=all chaos-tests/run.sh --rounds 5 --hold-s 5   a longer one
#   QH_SKIP_UPGRADE=1    leave out the rolling upgrade (chaos-tests/upgrade.sh)
#
# Extra arguments go to qh-chaos (see target/release/qh-chaos --help). The
# report is printed and written to chaos-tests/reports/report.json.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
export QH_TAG=${QH_TAG:-chaos}
export QH_HTTP_PORT=${QH_HTTP_PORT:-18000}
# Every fault, the data wipe included (QH_CHAOS_FAULTS=a,b,... picks some).
faults=${QH_CHAOS_FAULTS:-all}

if ! docker info >/dev/null 2>&1; then
  echo "chaos: the Docker engine is not reachable (docker info failed); the chaos suite needs it" >&2
  exit 1
fi
cargo build --release --locked -p quorumhub -p quorumhub-chaos
QH_SKIP_CARGO=1 deploy/build-images.sh "$QH_TAG"

deploy/down.sh --volumes >/dev/null 2>&1 || true
cleanup() {
  if [ "${QH_CHAOS_KEEP:-}" != 1 ]; then
    deploy/down.sh --volumes >/dev/null 2>&1 || true
  fi
}
trap cleanup EXIT
deploy/up.sh >/dev/null
mkdir -p chaos-tests/reports
set +e
target/release/qh-chaos --lb-url "http://127.0.0.1:$QH_HTTP_PORT" --faults "$faults" \
  --json chaos-tests/reports/report.json "$@"
rc=$?
set -e
if [ $rc -ne 0 ]; then
  for s in hub1 hub2 hub3 proxy1 proxy2; do
    docker logs --tail 40 "quorumhub_${s}_1" >"chaos-tests/reports/$s.log" 2>&1 || true
  done
  echo "chaos: failed; the last log lines of each container are in chaos-tests/reports/" >&2
  exit $rc
fi
# Then the rolling upgrade from the [upgrade-base] release to this one.
# One client's failed sign-ins must not lock out another behind the LB.
chaos-tests/login-limit.sh
# From a user's server, no hub port answers; the proxies and the LB do.
chaos-tests/isolation.sh
# Two profiles start two different images with the Docker spawner.
chaos-tests/profiles.sh
# Each role holds only its credential; gRPC is mutual TLS.
chaos-tests/credentials.sh
# Servers as Slurm jobs on a multi-node Slurm cluster in containers.
chaos-tests/slurm.sh
if [ "${QH_SKIP_UPGRADE:-}" != 1 ]; then
  chaos-tests/upgrade.sh
fi
