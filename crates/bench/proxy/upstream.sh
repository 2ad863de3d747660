#!/usr/bin/env bash
# The "single-user server" the benchmark's hub spawns (--spawner-cmd): an
# nginx that listens on the port the hub chose (from JUPYTERHUB_SERVICE_URL,
# as any JupyterHub server learns it) and answers {"ok":true}. So the
# quorumhub proxy reaches it through an ordinary route, and the direct and
# nginx runs reach the very same process.
#   upstream.sh BENCH_DIR   (BENCH_DIR: run.sh's temp dir, holds upstream.conf.in)
set -euo pipefail
dir=${1:?usage: upstream.sh BENCH_DIR}
url=${JUPYTERHUB_SERVICE_URL:?JUPYTERHUB_SERVICE_URL is not set: run by the hub}
hostport=${url#*://}
hostport=${hostport%%/*}
port=${hostport##*:}
sed -e "s|@DIR@|$dir|g" -e "s|@PORT@|$port|g" "$dir/upstream.conf.in" >"$dir/upstream.conf"
echo "$port" >"$dir/upstream.port"
exec nginx -p "$dir" -e "$dir/upstream-error.log" -c "$dir/upstream.conf"
