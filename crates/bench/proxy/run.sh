#!/usr/bin/env bash
# Proxy speed, side by side, in one run: wrk against the same upstream
#   1. direct,
#   2. through nginx (1 worker, upstream keep-alive; nginx-proxy.conf.in),
#   3. through quorumhub's proxy,
#   4. through nginx with TLS,
#   5. through quorumhub's proxy with TLS (--tls-cert/--tls-key),
# and prints req/s, p50 and p99 for each, plus JSON to a file.
#
# Usage (from anywhere in the repo):
#   crates/bench/proxy/run.sh [--duration 8s] [--connections 32] [--threads 1]
#                             [--warmup 1s] [--json proxy-bench.json] [--keep]
#                             [--perf DIR] [--perf-stat]
#
# Needs wrk, nginx, openssl and curl (Debian: apt-get install wrk nginx-light
# openssl curl) and the release binary: QH_BIN, else
# ${CARGO_TARGET_DIR:-target}/release/quorumhub, built with
# `cargo build --release -p quorumhub` when missing.
#
# The setup: a 1-replica cluster whose process spawner runs upstream.sh as
# the user's server, so the upstream is an nginx answering the 11-byte JSON
# {"ok":true} on the port the hub picked, and the route /user/bench/ to it
# is an ordinary replicated route that the proxy learns through
# Routes.Watch. Direct and nginx runs hit that same nginx. Everything
# listens on 127.0.0.1 on free ports; everything started is stopped at the
# end, on failure and on Ctrl-C too. --keep leaves the temp dir (logs).
# --perf DIR records the quorumhub proxies with `perf record -g` (linux-perf)
# during their runs, into DIR/perf-<path>.data; --perf-stat adds each
# proxy's CPU time, system calls and context switches per request (perf
# stat on the quorumhub process and the nginx worker). QH_PROXY_WORKERS sets the
# proxies' tokio worker threads (TOKIO_WORKER_THREADS) for an experiment.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../../.." && pwd)

duration=${DURATION:-8s}
connections=${CONNECTIONS:-32}
threads=${THREADS:-1}
warmup=${WARMUP:-1s}
json_out=${JSON:-proxy-bench.json}
keep=0
perf=
perf_stat=0
while [ $# -gt 0 ]; do
    case "$1" in
    --duration) duration=$2; shift 2 ;;
    --connections | -c) connections=$2; shift 2 ;;
    --threads | -t) threads=$2; shift 2 ;;
    --warmup) warmup=$2; shift 2 ;;
    --json) json_out=$2; shift 2 ;;
    --keep) keep=1; shift ;;
    --perf) perf=$2; shift 2 ;;
    --perf-stat) perf_stat=1; shift ;;
    -h | --help) awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "$0"; exit 0 ;;
    *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
    esac
done

missing=()
for tool in wrk nginx openssl curl; do
    command -v "$tool" >/dev/null 2>&1 || [ -x "/usr/sbin/$tool" ] || missing+=("$tool")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "missing: ${missing[*]}; on Debian: apt-get install wrk nginx-light openssl curl" >&2
    exit 1
fi
PATH=$PATH:/usr/sbin

qh=${QH_BIN:-${CARGO_TARGET_DIR:-$repo/target}/release/quorumhub}
if [ ! -x "$qh" ]; then
    echo "building $qh (cargo build --release -p quorumhub)" >&2
    (cd "$repo" && cargo build --release -p quorumhub)
fi

dir=$(mktemp -d "${TMPDIR:-/tmp}/qh-proxy-bench.XXXXXX")
pids=()
hub_http=
admin_token=bench-admin-token-$RANDOM$RANDOM$RANDOM
export QUORUMHUB_CLUSTER_SECRET=bench-cluster-secret-$RANDOM$RANDOM$RANDOM
export QUORUMHUB_LOG=${QUORUMHUB_LOG:-warn}

stop_pid() {
    local pid=$1 i
    kill -TERM "$pid" 2>/dev/null || return 0
    for i in $(seq 50); do
        kill -0 "$pid" 2>/dev/null || return 0
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
}

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    set +e
    # The server first, while its hub still runs (the hub stops it).
    if [ -n "$hub_http" ] && [ -f "$dir/upstream.pid" ]; then
        curl -s -o /dev/null -m 5 -X DELETE -H "Authorization: token $admin_token" \
            "http://$hub_http/hub/api/users/bench/server"
    fi
    local i
    for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
        stop_pid "${pids[i]}"
    done
    # Whatever the hub did not stop (it runs in its own session).
    if [ -f "$dir/upstream.pid" ]; then
        stop_pid "$(cat "$dir/upstream.pid")"
    fi
    if [ "$keep" = 1 ] || [ "$rc" != 0 ]; then
        echo "logs and configs left in $dir" >&2
    else
        rm -rf "$dir"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# A port nothing listens on, not handed out before in this run.
taken=" "
free_port() {
    local p
    while :; do
        p=$((20000 + RANDOM % 40000))
        case "$taken" in *" $p "*) continue ;; esac
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
            taken="$taken$p "
            echo "$p"
            return
        fi
    done
}

# wait_for URL PATTERN SECONDS [curl args]: until the body matches.
wait_for() {
    local url=$1 pattern=$2 secs=$3 i
    shift 3
    for i in $(seq $((secs * 10))); do
        if curl -sk -m 2 "$@" "$url" 2>/dev/null | grep -Eq "$pattern"; then
            return 0
        fi
        sleep 0.1
    done
    echo "no answer matching '$pattern' from $url within ${secs}s; logs in $dir" >&2
    return 1
}

grpc=127.0.0.1:$(free_port)
hub_http=127.0.0.1:$(free_port)
qh_port=$(free_port)
qh_tls_port=$(free_port)
nginx_port=$(free_port)
nginx_tls_port=$(free_port)

cp "$here/upstream.conf.in" "$here/upstream.sh" "$dir/"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
    -subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1 \
    -keyout "$dir/key.pem" -out "$dir/cert.pem" 2>"$dir/openssl.log"

echo "starting a 1-replica cluster (logs in $dir)" >&2
mkdir -p "$dir/hub"
# The upstream runs as this user, not as a system account "bench": a
# benchmark's throwaway nginx on loopback (the flag is for dev and tests).
hub_extra=()
if "$qh" hub --help | grep -q -- --spawner-run-as-hub-user; then
    hub_extra+=(--spawner-run-as-hub-user)
fi
QUORUMHUB_ADMIN_TOKEN=$admin_token "$qh" hub --node-id 1 --data-dir "$dir/hub" \
    --cluster-id proxy-bench --grpc-listen "$grpc" --http-listen "$hub_http" \
    --peer "1=$grpc/$hub_http" --public-url "http://127.0.0.1:$qh_port" \
    --spawner-cmd "$dir/upstream.sh" --spawner-cmd "$dir" "${hub_extra[@]}" \
    >"$dir/hub.log" 2>&1 &
pids+=($!)
wait_for "http://$hub_http/hub/health" . 30
auth=(-H "Authorization: token $admin_token")
wait_for "http://$hub_http/hub/api/users/bench" '"name"' 10 -X POST "${auth[@]}"
curl -s -o /dev/null -m 10 -X POST "${auth[@]}" "http://$hub_http/hub/api/users/bench/server"
wait_for "http://$hub_http/hub/api/users/bench" '"ready": ?true' 30 "${auth[@]}"
upstream_port=$(cat "$dir/upstream.port")

sed -e "s|@DIR@|$dir|g" -e "s|@UPSTREAM_PORT@|$upstream_port|g" \
    -e "s|@HTTP_PORT@|$nginx_port|g" -e "s|@HTTPS_PORT@|$nginx_tls_port|g" \
    "$here/nginx-proxy.conf.in" >"$dir/nginx-proxy.conf"
nginx -p "$dir" -e "$dir/nginx-proxy-error.log" -c "$dir/nginx-proxy.conf" &
pids+=($!)
nginx_master=$!

if [ -n "${QH_PROXY_WORKERS:-}" ]; then
    export TOKIO_WORKER_THREADS=$QH_PROXY_WORKERS
fi
if [ -n "$perf" ]; then
    mkdir -p "$perf"
    perf=$(cd "$perf" && pwd)
fi
proxy_args=(proxy --hub-grpc "$grpc" --hub-http "$hub_http")
"$qh" "${proxy_args[@]}" --listen "127.0.0.1:$qh_port" --name bench-proxy \
    >"$dir/proxy.log" 2>&1 &
pids+=($!)
declare -A pid_of
pid_of[quorumhub]=$!
path=/user/bench/
names=(direct nginx quorumhub)
urls=(
    "http://127.0.0.1:$upstream_port$path"
    "http://127.0.0.1:$nginx_port$path"
    "http://127.0.0.1:$qh_port$path"
)
if "$qh" proxy --help | grep -q -- --tls-cert; then
    "$qh" "${proxy_args[@]}" --listen "127.0.0.1:$qh_tls_port" --name bench-proxy-tls \
        --tls-cert "$dir/cert.pem" --tls-key "$dir/key.pem" >"$dir/proxy-tls.log" 2>&1 &
    pids+=($!)
    pid_of[quorumhub-tls]=$!
    names+=(nginx-tls quorumhub-tls)
    urls+=("https://127.0.0.1:$nginx_tls_port$path" "https://127.0.0.1:$qh_tls_port$path")
else
    echo "note: $qh has no proxy --tls-cert (an older build): TLS runs skipped" >&2
fi
for url in "${urls[@]}"; do
    wait_for "$url" '^\{"ok":true\}$' 20
done
# nginx's one worker does the proxying (for --perf-stat).
nginx_worker=$(cat "/proc/$nginx_master/task/$nginx_master/children" 2>/dev/null | awk '{ print $1 }')
if [ -n "$nginx_worker" ]; then
    pid_of[nginx]=$nginx_worker
    pid_of[nginx-tls]=$nginx_worker
fi

# wrk's latency ("1.23ms", "456.00us", "1.02s") in milliseconds.
to_ms() {
    awk -v v="$1" 'BEGIN {
        n = v + 0
        if (v ~ /us$/) n /= 1000; else if (v ~ /ms$/) n += 0;
        else if (v ~ /m$/) n *= 60000; else if (v ~ /s$/) n *= 1000
        printf "%.3f", n }'
}

rows=()
json_rows=()
for i in "${!names[@]}"; do
    name=${names[i]}
    url=${urls[i]}
    if [ "$warmup" != 0 ]; then
        wrk -t"$threads" -c"$connections" -d"$warmup" "$url" >/dev/null
    fi
    echo "wrk -t$threads -c$connections -d$duration --latency $url   ($name)" >&2
    perf_pid=
    stat_pid=
    if [ -n "$perf" ] && [ -n "${pid_of[$name]:-}" ]; then
        perf record -q -e cpu-clock -F 1999 -g -p "${pid_of[$name]}" \
            -o "$perf/perf-$name.data" 2>"$perf/perf-$name.log" &
        perf_pid=$!
    fi
    if [ "$perf_stat" = 1 ] && [ -n "${pid_of[$name]:-}" ]; then
        perf stat -x, -e task-clock,raw_syscalls:sys_enter,context-switches \
            -p "${pid_of[$name]}" -o "$dir/stat-$name.csv" &
        stat_pid=$!
    fi
    wrk -t"$threads" -c"$connections" -d"$duration" --latency "$url" >"$dir/wrk-$name.txt"
    if [ -n "$stat_pid" ]; then
        kill -INT "$stat_pid"
        wait "$stat_pid" || true
    fi
    if [ -n "$perf_pid" ]; then
        kill -INT "$perf_pid"
        wait "$perf_pid" || true
        echo "profile: perf report -i $perf/perf-$name.data" >&2
    fi
    out="$dir/wrk-$name.txt"
    rps=$(awk '/^Requests\/sec:/ { print $2 }' "$out")
    p50=$(to_ms "$(awk '$1 == "50%" { print $2 }' "$out")")
    p99=$(to_ms "$(awk '$1 == "99%" { print $2 }' "$out")")
    requests=$(awk '/requests in/ { print $1 }' "$out")
    non2xx=$(awk '/Non-2xx/ { print $NF }' "$out")
    sockerr=$(awk -F'[ ,]+' '/Socket errors/ { print $4 + $6 + $8 + $10 }' "$out")
    errors=$((${non2xx:-0} + ${sockerr:-0}))
    extra=
    if [ -f "$dir/stat-$name.csv" ]; then
        # CPU time and system calls of the proxy process per request.
        extra=$(awk -F, -v n="$requests" '
            $3 == "task-clock" { cpu = $1 } $3 ~ /sys_enter/ { sc = $1 } $3 == "context-switches" { cs = $1 }
            END { printf "  %6.1f us CPU/req %5.2f syscalls/req %5.2f switches/req", cpu * 1000 / n, sc / n, cs / n }' \
            "$dir/stat-$name.csv")
    fi
    rows+=("$(printf '%-14s %10.0f %9.3f %9.3f %8d%s' "$name" "$rps" "$p50" "$p99" "$errors" "$extra")")
    json_rows+=("$(printf '{"path": "%s", "url": "%s", "requests": %s, "req_per_s": %s, "p50_ms": %s, "p99_ms": %s, "errors": %d}' \
        "$name" "$url" "$requests" "$rps" "$p50" "$p99" "$errors")")
done

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", (b > 0) ? a / b : 0 }'; }
rps_of() { awk -v n="$1" '$1 == n { print $2 } END { print 0 }' <<<"$(printf '%s\n' "${rows[@]}")" | head -1; }
plain=$(ratio "$(rps_of quorumhub)" "$(rps_of nginx)")
tls=$(ratio "$(rps_of quorumhub-tls)" "$(rps_of nginx-tls)")

{
    echo
    echo "wrk -t$threads -c$connections -d$duration, $(nproc) cores, 11-byte JSON from an nginx upstream on loopback"
    printf '%-14s %10s %9s %9s %8s\n' path "req/s" "p50 ms" "p99 ms" errors
    printf '%s\n' "${rows[@]}"
    echo "quorumhub / nginx req/s: plain ${plain}x, TLS ${tls}x"
}

{
    echo "{"
    echo "  \"date\": \"$(date -u +%Y-%m-%dT%H:%M:%SZ)\","
    echo "  \"cores\": $(nproc),"
    echo "  \"wrk\": {\"threads\": $threads, \"connections\": $connections, \"duration\": \"$duration\"},"
    echo "  \"quorumhub_over_nginx\": {\"plain\": $plain, \"tls\": $tls},"
    echo "  \"runs\": ["
    for i in "${!json_rows[@]}"; do
        sep=,
        [ "$i" = $((${#json_rows[@]} - 1)) ] && sep=
        echo "    ${json_rows[i]}$sep"
    done
    echo "  ]"
    echo "}"
} >"$json_out"
echo "JSON written to $json_out" >&2
