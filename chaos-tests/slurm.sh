#!/usr/bin/env bash
# quorumhub on a real multi-node Slurm cluster in containers
# (deploy/slurm/): three hubs with --spawner slurm, two proxies, slurmctld
# and the compute nodes c1 and c2. Checks, in order:
#   - options outside the configured profiles (an unknown one, a partition
#     of the user's choosing): 400 naming the allowed ones;
#     a job Slurm refuses (a GPU on a cluster without any): the progress
#     stream shows Slurm's reason;
#   - four servers, placed by Slurm on both nodes, reached through both
#     proxies over HTTP and WebSocket;
#   - the leader killed (kill -9) while they run: the same jobs, adopted;
#   - the leader killed during a spawn (after sbatch, its job pending): the
#     server comes up on the job the dead leader submitted, and no second
#     job is ever submitted for it;
#   - the leader paused after sbatch and back once the next leader adopted
#     the job: the old leader does not cancel it;
#   - slurmctld killed: no running server is declared stopped, and a spawn
#     waits for Slurm and gets one job once it is back;
#   - stop cancels the job;
#   - a job that hits its time limit is recorded stopped with Slurm's
#     reason (TIMEOUT);
#   - a compute node killed: its servers recorded stopped (NODE_FAIL), their
#     routes gone; the user starts again and lands on the other node;
#   - a server that never answers on its port: stopped after the spawn
#     timeout, its job cancelled;
#   - a job named like this cluster's servers that no server owns is
#     cancelled by the leader; someone else's job is left alone.
#
#   chaos-tests/slurm.sh          (builds quorumhub-slurm:TAG from
#                                  target/release/quorumhub; brings the
#                                  cluster up and down itself)
#   QH_SLURM_KEEP=1               leave the cluster up afterwards
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
export QH_TAG=${QH_TAG:-dev}
export QH_SLURM_PROJECT=${QH_SLURM_PROJECT:-quorumhub-slurm}
net=${QH_SLURM_NET:-10.233.0}
project=$QH_SLURM_PROJECT
die() {
  echo "slurm: $*" >&2
  for c in hub1 hub2 hub3 slurmctld; do
    echo "--- ${project}_${c}_1" >&2
    docker logs --tail 15 "${project}_${c}_1" 2>&1 | sed 's/^/    /' >&2 || true
  done
  exit 1
}
for tool in docker docker-compose curl python3; do command -v $tool >/dev/null || die "$tool is required"; done

deploy/slurm/down.sh >/dev/null 2>&1 || true
cleanup() {
  [ "${QH_SLURM_KEEP:-}" = 1 ] || deploy/slurm/down.sh >/dev/null 2>&1 || true
}
trap cleanup EXIT
# The image from this checkout's release binary, every time (a few seconds).
deploy/slurm/build-image.sh "$QH_TAG" >/dev/null || die "building quorumhub-slurm:$QH_TAG failed"
deploy/slurm/up.sh >/dev/null || die "deploy/slurm/up.sh failed"
# shellcheck disable=SC1091
. deploy/slurm/.env
auth="Authorization: token $QUORUMHUB_ADMIN_TOKEN"
p1="http://$net.31:8000"
p2="http://$net.32:8000"
api="$p1/hub/api"
ctl="${project}_slurmctld_1"
started=$SECONDS

squeue() { docker exec "$ctl" squeue -h "$@"; }
# "ID HOST" of user $1's active job(s).
job_of() { squeue -t PENDING,RUNNING,CONFIGURING,COMPLETING -o '%i %B %j' | awk -v u=".$1..g" 'index($3, u) {print $1, $2}'; }
# Every job ever submitted for user $1 that Slurm still knows (any state).
jobs_ever() { squeue -t all -o '%i %j' | awk -v u=".$1..g" 'index($2, u) {print $1}' | sort -n; }
ready() { curl -fsS -H "$auth" "$api/users/$1" 2>/dev/null | grep -q '"ready":true'; }
wait_ready() {
  local deadline=$((SECONDS + ${2:-90}))
  until ready "$1"; do
    [ $SECONDS -lt $deadline ] || die "$1's server is not ready after ${2:-90} s ($(job_of "$1"))"
    sleep 0.5
  done
}
has_server() { curl -fsS -H "$auth" "$api/users/$1" | grep -q '"servers":{"'; }
# Whether some hub logged a line holding every one of the fixed strings
# "$@". The logs are read whole first: `docker logs | grep -q` fails under
# pipefail whenever grep exits before docker logs has written everything.
logged() {
  local h lines s
  for h in hub1 hub2 hub3; do
    lines=$(docker logs "${project}_${h}_1" 2>&1) || true
    for s in "$@"; do lines=$(grep -F -- "$s" <<<"$lines") || break; done
    [ -n "$lines" ] && return 0
  done
  return 1
}
start() {
  local code
  code=$(curl -sS -o /dev/null -w '%{http_code}' -X POST -H "$auth" -H 'content-type: application/json' \
    -d "{\"user_options\": {\"profile\": \"${2:-standard}\"}}" "$api/users/$1/server")
  [ "$code" = 201 ] || [ "$code" = 202 ] || die "starting $1's server answered $code"
}
leader() {
  local id
  for h in hub1 hub2 hub3; do
    id=$(docker exec "${project}_${h}_1" quorumhub ctl --output json status 2>/dev/null \
      | python3 -c 'import json,sys; print(json.load(sys.stdin).get("leader") or "")' 2>/dev/null) || continue
    [ -n "$id" ] && [ "$id" != 0 ] && { echo "$id"; return; }
  done
}
kill_leader() {
  local id
  id=$(leader)
  [ -n "$id" ] || die "no hub leads"
  docker kill -s KILL "${project}_hub${id}_1" >/dev/null
  echo "$id"
}
revive() {
  docker start "${project}_hub$1_1" >/dev/null
  local deadline=$((SECONDS + 60))
  until [ -n "$(leader)" ]; do
    [ $SECONDS -lt $deadline ] || die "no leader 60 s after hub $1 came back"
    sleep 0.5
  done
}
# Start user $1's server with the partition closed, so its job stays
# pending (as in a busy queue): prints the job's id once sbatch has run.
pending_spawn() {
  docker exec "$ctl" scontrol update PartitionName=main State=DOWN
  start "$1"
  local deadline=$((SECONDS + 30))
  until [ -n "$(job_of "$1")" ]; do
    [ $SECONDS -lt $deadline ] || die "no job for $1 within 30 s"
    sleep 0.1
  done
  job_of "$1" | awk '{print $1}'
}
open_partition() { docker exec "$ctl" scontrol update PartitionName=main State=UP; }
# GET through a proxy: the built-in server's status names its prefix.
through() {
  curl -fs --max-time 5 -H "$auth" "$1/user/$2/api/status" | grep -q "\"prefix\":\"/user/$2/\""
}
# A WebSocket round trip through a proxy (the built-in server echoes).
ws_echo() {
  python3 - "$1" "/user/$2/ws" <<'PY'
import base64, os, socket, sys, urllib.parse
u = urllib.parse.urlparse(sys.argv[1])
s = socket.create_connection((u.hostname, u.port), timeout=5)
key = base64.b64encode(os.urandom(16)).decode()
s.sendall((f"GET {sys.argv[2]} HTTP/1.1\r\nHost: {u.netloc}\r\nUpgrade: websocket\r\n"
           f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
head = b""
while b"\r\n\r\n" not in head:
    chunk = s.recv(1)
    if not chunk:
        sys.exit("closed during the handshake")
    head += chunk
if not head.startswith(b"HTTP/1.1 101"):
    sys.exit("handshake answered " + head.split(b"\r\n")[0].decode())
payload = b"hello from slurm"
mask = os.urandom(4)
s.sendall(bytes([0x81, 0x80 | len(payload)]) + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))
frame = b""
while len(frame) < 2 + len(payload):
    chunk = s.recv(64)
    if not chunk:
        sys.exit("closed before the echo")
    frame += chunk
if frame[0] != 0x81 or frame[2:2 + len(payload)] != payload:
    sys.exit(f"not an echo: {frame!r}")
PY
}

for i in $(seq 1 10); do
  curl -fsS -o /dev/null -X POST -H "$auth" "$api/users/u$i" || die "cannot create u$i"
done

# ---- bad input ----
body=$(curl -sS -X POST -H "$auth" -H 'content-type: application/json' \
  -d '{"user_options": {"profile": "huge"}}' -w ' %{http_code}' "$api/users/u8/server")
[ "${body##* }" = 400 ] || die "an unknown profile got ${body##* }, not 400: $body"
grep -q 'Options include: standard, big, short, deaf, gpu' <<<"$body" || die "the refusal does not name the profiles: $body"
# A partition (or any sbatch setting) is the profiles' to choose, not the user's.
body=$(curl -sS -X POST -H "$auth" -H 'content-type: application/json' \
  -d '{"user_options": {"profile": "standard", "partition": "big", "req_memory": "64G"}}' -w ' %{http_code}' "$api/users/u8/server")
[ "${body##* }" = 400 ] || die "a start choosing its own partition got ${body##* }, not 400: $body"
grep -q 'not for users to set.*standard, big, short, deaf, gpu' <<<"$body" || die "the refusal does not name the profiles: $body"
[ -z "$(jobs_ever u8)" ] || die "a refused start submitted a job"
# Slurm refuses a GPU job on this cluster: as JupyterHub, a spawn that
# fails within --slow-spawn-timeout-s answers 500 with the reason; a slower
# one answers 202 and the progress stream ends with it.
body=$(curl -sS -X POST -H "$auth" -H 'content-type: application/json'   -d '{"user_options": {"profile": "gpu"}}' -w ' %{http_code}' "$api/users/u8/server")
case ${body##* } in
  500) events=$body ;;
  202) events=$(curl -sS -N --max-time 60 -H "$auth" "$api/users/u8/server/progress" || true) ;;
  *) die "the GPU spawn answered ${body##* }: $body" ;;
esac
grep -qi 'Slurm refused the job: .*gres' <<<"$events" || die "the user is not shown Slurm's reason: $events"
echo "slurm: an unknown profile and a user-chosen partition got 400; a job Slurm refused shows its reason: $(grep -o 'Slurm refused[^"]*' <<<"$events" | head -1)"

# ---- four servers on both nodes, through both proxies, HTTP and WebSocket ----
t0=$SECONDS
for i in 1 2 3 4; do start "u$i"; done
for i in 1 2 3 4; do wait_ready "u$i"; done
echo "slurm: four servers ready in $((SECONDS - t0)) s"
hosts=$(for i in 1 2 3 4; do job_of "u$i" | awk '{print $2}'; done | sort -u | tr '\n' ' ')
[ "$hosts" = "c1 c2 " ] || die "the four servers run on '$hosts', not on both c1 and c2"
for i in 1 2 3 4; do
  for p in "$p1" "$p2"; do
    through "$p" "u$i" || die "u$i's server does not answer through $p"
    ws_echo "$p" "u$i" || die "no WebSocket echo from u$i's server through $p"
  done
done
echo "slurm: placed on $hosts; each answers through both proxies over HTTP and WebSocket"

# ---- the leader killed while they run ----
before=$(for i in 1 2 3 4; do job_of "u$i"; done)
dead=$(kill_leader)
sleep 8
new=$(leader)
[ -n "$new" ] && [ "$new" != "$dead" ] || die "no new leader after hub $dead was killed"
after=$(for i in 1 2 3 4; do job_of "u$i"; done)
[ "$before" = "$after" ] || die "the jobs changed across the failover: before '$before', after '$after'"
for i in 1 2 3 4; do
  ready "u$i" || die "u$i's server is no longer ready after the failover"
  through "$p2" "u$i" || die "u$i's server does not answer after the failover"
done
revive "$dead"
echo "slurm: hub $dead killed while four servers ran; hub $new leads; the same four jobs were adopted"

# ---- the leader killed during a spawn ----
# The partition is closed first, so u5's job stays pending (as in a busy
# queue) and the leader dies after sbatch, before the job could run and be
# recorded; the next leader must find that job, not submit another.
job5=$(pending_spawn u5)
dead=$(kill_leader)
sleep 3
[ -n "$(leader)" ] || die "no new leader 3 s after hub $dead was killed"
open_partition
wait_ready u5 120
[ "$(jobs_ever u5)" = "$job5" ] || die "u5 has jobs '$(jobs_ever u5 | tr '\n' ' ')', not just $job5"
through "$p1" u5 || die "u5's server does not answer through the proxies"
logged 'user=u5 ' 'adopting the Slurm job a previous leader submitted' || die "no hub logged adopting u5's unrecorded job $job5"
revive "$dead"
echo "slurm: hub $dead killed after submitting u5's job $job5 (pending); the next leader adopted it, none other was submitted"

# ---- the leader paused during a spawn, and back after the next leader
# adopted its job: the old leader, finding its start not recorded, must not
# cancel that job ----
job10=$(pending_spawn u10)
paused=$(leader)
docker pause "${project}_hub${paused}_1" >/dev/null
sleep 3
open_partition
wait_ready u10 120
docker unpause "${project}_hub${paused}_1" >/dev/null
sleep 8
[ "$(job_of u10 | awk '{print $1}')" = "$job10" ] || die "u10's job $job10 did not survive the old leader's return ($(job_of u10))"
ready u10 || die "u10's server is not ready after the old leader came back"
through "$p2" u10 || die "u10's server does not answer after the old leader came back"
[ "$(jobs_ever u10)" = "$job10" ] || die "u10 has jobs '$(jobs_ever u10 | tr '\n' ' ')', not just $job10"
echo "slurm: hub $paused paused after submitting u10's job $job10; the next leader adopted it, and the old leader, back, left it running"

# ---- slurmctld down: nothing declared dead, a spawn waits ----
docker kill -s KILL "$ctl" >/dev/null
start u7
sleep 12
for i in 1 2 3 5; do
  has_server "u$i" || die "u$i's server was declared stopped while slurmctld was down"
done
has_server u7 || die "u7's spawn failed while slurmctld was down instead of waiting"
docker start "$ctl" >/dev/null
wait_ready u7 120
[ "$(jobs_ever u7 | wc -l)" = 1 ] || die "u7 has jobs '$(jobs_ever u7 | tr '\n' ' ')', not one"
for i in 1 2 3 5; do ready "u$i" || die "u$i's server is not ready after slurmctld came back"; done
echo "slurm: slurmctld down 12 s: no server declared stopped; u7's spawn waited and got one job once it was back"

# ---- stop cancels the job ----
job4=$(job_of u4 | awk '{print $1}')
curl -fsS -o /dev/null -X DELETE -H "$auth" "$api/users/u4/server" || die "cannot stop u4's server"
deadline=$((SECONDS + 40))
until state=$(squeue -t all -j "$job4" -o "%T") && [[ $state == CANCELLED* ]]; do
  [ $SECONDS -lt $deadline ] || die "job $job4 is still '$state' 40 s after u4's server was stopped"
  sleep 0.5
done
has_server u4 && die "u4 still has a server after the stop"
echo "slurm: stopping u4's server ended job $job4 ($state)"

# ---- a compute node killed ----
read -r job1 node1 <<<"$(job_of u1)"
other=c1; [ "$node1" = c1 ] && other=c2
on_node=$(for i in 1 2 3 5 7 10; do job_of "u$i" | awk -v n="$node1" -v u="u$i" '$2 == n {print u}'; done | tr '\n' ' ')
docker kill -s KILL "${project}_${node1}_1" >/dev/null
t0=$SECONDS
for u in $on_node; do
  deadline=$((SECONDS + 120))
  while has_server "$u"; do
    [ $SECONDS -lt $deadline ] || die "$u's server on the killed node $node1 is still recorded after 120 s"
    sleep 1
  done
  if through "$p1" "$u"; then die "$u's route still leads to a server after its node died"; fi
done
echo "slurm: node $node1 killed; its servers ($on_node) recorded stopped in $((SECONDS - t0)) s, routes gone"
logged 'server stopped' 'NODE_FAIL' || die "no hub recorded Slurm's NODE_FAIL as the reason"
start u1
wait_ready u1 90
read -r new1 where <<<"$(job_of u1)"
[ "$where" = "$other" ] || die "u1 restarted on '$where', not on the surviving node $other"
through "$p2" u1 || die "u1's new server does not answer"
echo "slurm: u1 started again as job $new1 on $other"
docker start "${project}_${node1}_1" >/dev/null

# ---- a job nobody owns, and one that is not quorumhub's ----
# Submitted by hand: one named like this cluster's servers (as a leader that
# died between sbatch and recording, for a server since stopped, leaves
# one), and one of someone else's. The leader cancels the first within
# REAP_MIN_AGE (60 s) plus a reap period (30 s), and never touches the second.
orphan=$(docker exec "$ctl" sbatch --parsable --uid=2060 --gid=2060 --chdir=/tmp -o /dev/null \
  --job-name=qh.quorumhub.u60..g999.orphan --wrap 'exec /usr/local/bin/quorumhub singleuser --port 45998')
foreign=$(docker exec "$ctl" sbatch --parsable --uid=2059 --gid=2059 --chdir=/tmp -o /dev/null \
  --job-name=someone-elses --wrap 'exec /usr/local/bin/quorumhub singleuser --port 45999')

# ---- a server that never answers where the hub looks: stopped after the
# spawn timeout (30 s), its job cancelled ----
start u9 deaf
deadline=$((SECONDS + 20))
until [ -n "$(job_of u9)" ]; do
  [ $SECONDS -lt $deadline ] || die "no job for u9 within 20 s"
  sleep 0.2
done
job9=$(job_of u9 | awk '{print $1}')

# ---- a time limit ----
start u6 short
wait_ready u6
read -r job6 _ <<<"$(job_of u6)"
deadline=$((SECONDS + 180))
while has_server u6; do
  [ $SECONDS -lt $deadline ] || die "u6's one-minute server still runs after 180 s"
  sleep 2
done
logged 'server stopped' "Slurm job $job6 ended: TIMEOUT" || die "u6's stop was not recorded with Slurm's TIMEOUT"
echo "slurm: u6's job $job6 hit its one-minute limit and was recorded stopped: TIMEOUT"
has_server u9 && die "u9's server, which never answered, is still recorded"
[[ $(squeue -t all -j "$job9" -o '%T') == CANCELLED* ]] || die "u9's job $job9 is '$(squeue -t all -j "$job9" -o '%T')', not cancelled"
echo "slurm: u9's server never answered on its port: stopped after the spawn timeout, job $job9 cancelled"
deadline=$((SECONDS + 150))
until [[ $(squeue -t all -j "$orphan" -o '%T') == CANCELLED* ]]; do
  [ $SECONDS -lt $deadline ] || die "the job $orphan that no server owns is still '$(squeue -t all -j "$orphan" -o '%T')'"
  sleep 2
done
[ "$(squeue -t all -j "$foreign" -o '%T')" = RUNNING ] || die "the foreign job $foreign is '$(squeue -t all -j "$foreign" -o '%T')', not left running"
docker exec "$ctl" scancel "$foreign"
echo "slurm: the job $orphan that no server owned was cancelled; the foreign job $foreign was left alone"
echo "slurm: PASS in $((SECONDS - started)) s"
