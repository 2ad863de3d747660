#!/usr/bin/env bash
# The rolling-upgrade test: a deployment on v1 images, the chaos workload
# running, deploy/rolling-upgrade.sh to v2 images, then the usual checks plus
# "not one request through the load balancer failed" and the cluster-version
# gate (chaos-tests/src/upgrade.rs).
#
#   v1 = the commit named in chaos-tests/upgrade-base (the previous
#        release, log format 2), built from a git worktree in
#        target/upgrade-base (with its own target dir);
#   v2 = this checkout, images tagged $QH_TAG (default chaos).
#
# Called by chaos-tests/run.sh after the fault suite; runs alone too.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
export QH_TAG=${QH_TAG:-chaos}
export QH_HTTP_PORT=${QH_HTTP_PORT:-18000}
die() { echo "upgrade: $*" >&2; exit 1; }

# The first line of chaos-tests/upgrade-base that is not a comment.
v1=$(grep -v '^#' chaos-tests/upgrade-base | grep -m1 -E '^[0-9a-f]{7,40}$') || true
[ -n "$v1" ] || die "chaos-tests/upgrade-base names no commit"
v1=$(git rev-parse --verify -q "$v1^{commit}") \
  || die "the upgrade base $(grep -v '^#' chaos-tests/upgrade-base) is not in this checkout's history (a shallow clone? git fetch --unshallow)"
base=$root/target/upgrade-base
src=$base/src
if [ ! -d "$src" ] || [ "$(git -C "$src" rev-parse HEAD 2>/dev/null)" != "$v1" ]; then
  rm -rf "$src"
  git worktree prune
  git worktree add --detach "$src" "$v1" >/dev/null
fi
echo "upgrade: v1 = $(git log -1 --format='%h %s' "$v1")" >&2
# A target dir of its own: cargo hashes workspace members by their path
# relative to the workspace root, so the worktree's crates would collide
# with this checkout's in a shared target dir.
(cd "$src" && CARGO_TARGET_DIR=$base/target cargo build --release --locked -p quorumhub)
mkdir -p "$base/bin"
cp "$base/target/release/quorumhub" "$base/target/release/hubctl" "$base/bin/"
cargo build --release --locked -p quorumhub -p quorumhub-chaos
if cmp -s "$base/bin/quorumhub" "$root/target/release/quorumhub"; then
  die "target/release/quorumhub is the v1 binary"
fi
QH_SKIP_CARGO=1 QH_BIN_DIR=$base/bin QH_REVISION=$(git rev-parse --short "$v1") \
  deploy/build-images.sh upgrade-v1 >/dev/null
QH_SKIP_CARGO=1 deploy/build-images.sh "$QH_TAG" >/dev/null

deploy/down.sh --volumes >/dev/null 2>&1 || true
cleanup() {
  if [ "${QH_CHAOS_KEEP:-}" != 1 ]; then
    deploy/down.sh --volumes >/dev/null 2>&1 || true
  fi
}
trap cleanup EXIT
# The previous release knows neither role credentials nor gRPC TLS.
QH_CREDENTIALS=legacy QH_TAG=upgrade-v1 deploy/up.sh >/dev/null
mkdir -p chaos-tests/reports
set +e
target/release/qh-chaos --lb-url "http://127.0.0.1:$QH_HTTP_PORT" --faults rolling-upgrade \
  --upgrade-to "$QH_TAG" --json chaos-tests/reports/upgrade.json "$@"
rc=$?
set -e
if [ $rc -ne 0 ]; then
  for s in hub1 hub2 hub3 proxy1 proxy2; do
    docker logs --tail 60 "quorumhub_${s}_1" >"chaos-tests/reports/upgrade-$s.log" 2>&1 || true
  done
  echo "upgrade: failed; the last log lines of each container are in chaos-tests/reports/" >&2
fi
exit $rc
