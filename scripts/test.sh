#!/usr/bin/env bash
# The test command (README): every crate's tests, cluster tests included,
# then the bounded chaos suite against the container deployment.
set -euo pipefail
cd "$(dirname "$0")/.."
profile=default
[ "${CI:-}" = "true" ] && profile=ci
# The real Jupyter clients and the real OpenID provider the browser tests
# run against (pip, idempotent).
scripts/jupyter-venv.sh
scripts/oidc-venv.sh
scripts/schemathesis-venv.sh
cargo nextest run --workspace --locked --profile "$profile" "$@"

# The chaos suite against the three-node container deployment (Docker).
# QH_SKIP_CHAOS=1 skips it on a machine without a Docker engine.
if [ "${QH_SKIP_CHAOS:-}" = 1 ]; then
  echo "QH_SKIP_CHAOS=1: skipping the chaos suite"
else
  chaos-tests/run.sh
fi
