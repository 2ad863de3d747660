#!/usr/bin/env bash
# Spawning through Slurm, measured (crates/bench/slurm/bench.py) on the
# container cluster, which this brings up from this checkout's release
# binary and down again.
#
#   cargo build --release -p quorumhub && crates/bench/slurm/run.sh --json slurm-bench.json
#   QH_SLURM_KEEP=1   leave the cluster up afterwards
# Other arguments go to bench.py (--spawns, --concurrency, --burst, --running).
set -euo pipefail
root=$(cd "$(dirname "$0")/../../.." && pwd)
cd "$root"
export QH_TAG=${QH_TAG:-dev}
[ -x target/release/quorumhub ] || cargo build --release --locked -p quorumhub
deploy/slurm/down.sh >/dev/null 2>&1 || true
cleanup() { [ "${QH_SLURM_KEEP:-}" = 1 ] || deploy/slurm/down.sh >/dev/null 2>&1 || true; }
trap cleanup EXIT
deploy/slurm/build-image.sh "$QH_TAG" >/dev/null
deploy/slurm/up.sh >/dev/null
python3 crates/bench/slurm/bench.py "$@"
