#!/usr/bin/env bash
# Installs schemathesis, which the OpenAPI test (crates/quorumhub/tests/
# openapi.rs) runs against docs/rest-api.yml, into a venv:
# target/schemathesis-venv unless QH_SCHEMATHESIS_VENV says otherwise.
# Idempotent: a venv that already has it is left alone.
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${QH_SCHEMATHESIS_VENV:-target/schemathesis-venv}"
want="schemathesis==4.32.5"
if [ -x "$venv/bin/st" ] && "$venv/bin/st" --version 2>/dev/null | grep -q 4.32.5; then
  exit 0
fi
python3 -m venv "$venv"
"$venv/bin/pip" install --quiet --disable-pip-version-check $want
"$venv/bin/st" --version >/dev/null
echo "installed $want into $venv"
