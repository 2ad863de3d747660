#!/usr/bin/env bash
# Rolling zero-downtime upgrade of the running deployment to the images
# quorumhub:NEW_TAG (build them first: deploy/build-images.sh NEW_TAG).
#
# Usage: deploy/rolling-upgrade.sh NEW_TAG
#   QH_PROJECT=quorumhub  compose project name, as for up.sh
#
# For each hub replica, followers first and the leader last:
#   1. if it leads, move leadership away (hubctl transfer-leader) and give
#      the proxies 2 s to learn the new leader;
#   2. stop it gracefully (SIGTERM: it hands over, ends its route watches,
#      finishes its HTTP requests, leaves Raft) and check it exited cleanly;
#   3. start the new image on the same volume;
#   4. wait until it follows the leader and has applied everything the
#      leader held (hubctl wait-ready N).
# Then each proxy: SIGTERM (its health check fails for 1.5 s so HAProxy
# takes it out, then it drains), start the new image, wait until it
# answers and HAProxy has had time to check it, then the next one.
# The load balancer (HAProxy) is not ours and is not restarted.
#
# New commands of the new release stay refused until every member runs it;
# then the leader raises the cluster version by itself (hubctl status shows
# it). A failed step stops the script; the cluster keeps running on a mix of
# releases, which it supports, and the script can be run again.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
export QH_PROJECT=${QH_PROJECT:-quorumhub}
project=$QH_PROJECT
env_file=$here/.env
compose_file=$here/docker-compose.yml

die() { echo "rolling-upgrade: $*" >&2; exit 1; }
say() { echo "rolling-upgrade: $*" >&2; }

[ $# -eq 1 ] || die "usage: deploy/rolling-upgrade.sh NEW_TAG"
new=$1
[[ $new =~ ^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$ ]] || die "invalid image tag '$new'"
for tool in docker docker-compose curl; do
  command -v "$tool" >/dev/null || die "$tool is required"
done
[ -f "$env_file" ] || die "$env_file is missing: is the deployment up (deploy/up.sh)?"
docker image inspect "quorumhub:$new" >/dev/null 2>&1 \
  || die "image quorumhub:$new does not exist; build it: deploy/build-images.sh $new"
docker image inspect "quorumhub-lb:$new" >/dev/null 2>&1 \
  || die "image quorumhub-lb:$new does not exist; build it: deploy/build-images.sh $new"

# The new tag for every service we (re)create; the LB keeps running as is.
compose() { QH_TAG=$new docker-compose -p "$project" --env-file "$env_file" -f "$compose_file" "$@"; }
container() { echo "${project}_$1_1"; }
hubctl_in() { local svc=$1; shift; docker exec "$(container "$svc")" hubctl "$@"; }

# Any running hub container to ask (hubctl there knows every replica's address).
asker() {
  local h
  for h in hub1 hub2 hub3; do
    if [ "$(docker inspect -f '{{.State.Running}}' "$(container "$h")" 2>/dev/null)" = true ]; then
      echo "$h"; return 0
    fi
  done
  return 1
}

leader_id() {
  local a
  a=$(asker) || return 1
  hubctl_in "$a" --output json status | sed -n 's/^  "leader": \([0-9][0-9]*\),\{0,1\}$/\1/p'
}

image_of() { docker inspect -f '{{.Config.Image}}' "$(container "$1")" 2>/dev/null || true; }

upgrade_hub() {
  local svc=$1 id=${1#hub} leader other code
  if [ "$(image_of "$svc")" = "quorumhub:$new" ]; then
    say "$svc already runs quorumhub:$new"; return 0
  fi
  leader=$(leader_id) || die "no hub replica answers"
  if [ "$leader" = "$id" ]; then
    other=$(for h in hub1 hub2 hub3; do [ "$h" != "$svc" ] && echo "$h"; done | head -1)
    say "$svc leads: transferring leadership"
    hubctl_in "$other" transfer-leader >&2 || die "transfer-leader failed; nothing was stopped"
    # The proxies send /hub/ requests to the leader they know; they learn the
    # new one from the next heartbeat (every second). Wait for that before
    # the old leader closes its connections, so no request is sent on one it
    # is closing (a stopping replica of this release also waits by itself).
    sleep 2
  fi
  say "stopping $svc (SIGTERM)"
  compose stop "$svc" >/dev/null 2>&1 || die "docker-compose stop $svc failed"
  code=$(docker inspect -f '{{.State.ExitCode}}' "$(container "$svc")")
  [ "$code" = 0 ] || die "$svc exited with code $code, not cleanly: see docker logs $(container "$svc")"
  say "starting $svc on quorumhub:$new (same volume)"
  compose up -d --no-deps "$svc" >/dev/null 2>&1 || die "docker-compose up $svc failed"
  say "waiting for $svc to catch up"
  hubctl_in "$svc" --output json wait-ready "$id" --timeout-s 120 >/dev/null \
    || die "$svc did not catch up; the others keep serving. Look at docker logs $(container "$svc")"
}

upgrade_proxy() {
  local svc=$1 code ip deadline
  if [ "$(image_of "$svc")" = "quorumhub:$new" ]; then
    say "$svc already runs quorumhub:$new"; return 0
  fi
  say "draining $svc (SIGTERM)"
  compose stop "$svc" >/dev/null 2>&1 || die "docker-compose stop $svc failed"
  code=$(docker inspect -f '{{.State.ExitCode}}' "$(container "$svc")")
  [ "$code" = 0 ] || die "$svc exited with code $code, not cleanly"
  compose up -d --no-deps "$svc" >/dev/null 2>&1 || die "docker-compose up $svc failed"
  deadline=$((SECONDS + 60))
  while :; do
    ip=$(docker inspect -f "{{with index .NetworkSettings.Networks \"${project}_qh\"}}{{.IPAddress}}{{end}}" "$(container "$svc")" 2>/dev/null || true)
    if [ -n "$ip" ] && curl -fsS -m 1 "http://$ip:8000/_proxy/health" >/dev/null 2>&1; then break; fi
    [ $SECONDS -lt $deadline ] || die "$svc does not answer on its health check"
    sleep 0.2
  done
  # HAProxy checks every 500 ms and needs one success (rise 1); leave it
  # four intervals before the other proxy goes.
  sleep 2
  say "$svc serves on quorumhub:$new"
}

started=$SECONDS
for svc in $( { l=$(leader_id) || die "no hub replica answers"; \
               for h in hub1 hub2 hub3; do [ "$h" != "hub$l" ] && echo "$h"; done; echo "hub$l"; } ); do
  upgrade_hub "$svc"
done
for svc in proxy1 proxy2; do
  upgrade_proxy "$svc"
done
a=$(asker) || die "no hub replica answers"
say "done in $((SECONDS - started)) s; the leader raises the cluster version once every member reports the new log format:"
hubctl_in "$a" status >&2
