#!/usr/bin/env bash
# The test command (README): every crate's tests, cluster tests included.
set -euo pipefail
cd "$(dirname "$0")/.."
profile=default
[ "${CI:-}" = "true" ] && profile=ci
exec cargo nextest run --workspace --locked --profile "$profile" "$@"
