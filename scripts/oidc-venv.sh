#!/usr/bin/env bash
# Installs the real OpenID provider the OIDC tests sign in against
# (django-oidc-provider, from PyPI) into target/oidc-venv unless
# QH_OIDC_VENV says otherwise. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${QH_OIDC_VENV:-target/oidc-venv}"
want="django-oidc-provider==0.9.0 Django==5.2.19 PyJWT==2.15.1 cryptography==50.0.2"
if [ -x "$venv/bin/python" ] && "$venv/bin/python" -c 'import oidc_provider, django' 2>/dev/null; then
  exit 0
fi
python3 -m venv "$venv"
"$venv/bin/pip" install --quiet --disable-pip-version-check $want
echo "installed $want into $venv"
