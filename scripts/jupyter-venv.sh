#!/usr/bin/env bash
# Installs the real Jupyter clients the browser tests run against
# (jupyterhub-singleuser with JupyterLab and a Python kernel) into a venv,
# target/jupyter-venv unless QH_JUPYTER_VENV says otherwise. Idempotent:
# a venv that already has them is left alone.
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${QH_JUPYTER_VENV:-target/jupyter-venv}"
want="jupyterhub==6.1.1 jupyter-server==2.21.1 jupyterlab==4.6.6 ipykernel==7.4.0 jupyterhub-idle-culler==2.0.0"
if [ -x "$venv/bin/jupyterhub-singleuser" ] && "$venv/bin/python" -c 'import jupyterlab, ipykernel, jupyterhub_idle_culler' 2>/dev/null; then
  exit 0
fi
python3 -m venv "$venv"
"$venv/bin/pip" install --quiet --disable-pip-version-check $want
"$venv/bin/jupyterhub-singleuser" --version >/dev/null
echo "installed $want into $venv"
