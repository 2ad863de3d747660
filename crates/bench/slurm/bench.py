#!/usr/bin/env python3
"""Spawning through Slurm, measured on the container cluster (deploy/slurm/).

- latency: time from POST /hub/api/users/NAME/server to the server's
  "ready" in the user model, one spawn at a time (p50, p90, max over --spawns);
- throughput: spawns per second with --concurrency clients, each starting
  servers one after another until --burst servers run;
- failover: with --running servers up, the leader is killed with SIGKILL;
  measured are the time until a write is acknowledged again, the time until
  a new spawn is ready
  (the new leader's controller works), and the check that every running
  server kept its Slurm job and answers through the proxy.

Needs the cluster up (deploy/slurm/up.sh, or crates/bench/slurm/run.sh which
brings it up and down) and its users u1 ... u60 (deploy/slurm/passwd).
"""

import argparse
import concurrent.futures
import json
import os
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))


def env_file():
    values = {}
    with open(os.path.join(ROOT, "deploy", "slurm", ".env")) as f:
        for line in f:
            if "=" in line:
                k, v = line.strip().split("=", 1)
                values[k] = v
    return values


class Hub:
    def __init__(self, net, project, token):
        self.api = f"http://{net}.31:8000/hub/api"
        self.proxy = f"http://{net}.32:8000"
        self.project = project
        self.token = token

    def call(self, method, path, body=None, timeout=30):
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.api + path, data=data, method=method)
        req.add_header("Authorization", f"token {self.token}")
        if data is not None:
            req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                raw = r.read()
                return r.status, json.loads(raw) if raw else None
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode(errors="replace")
        except (urllib.error.URLError, OSError) as e:
            return 0, str(e)

    def ready(self, user):
        status, model = self.call("GET", f"/users/{user}", timeout=5)
        return status == 200 and isinstance(model, dict) and (model.get("servers", {}).get("", {}) or {}).get("ready") is True

    def has_server(self, user):
        status, model = self.call("GET", f"/users/{user}", timeout=5)
        return status == 200 and isinstance(model, dict) and bool(model.get("servers"))

    def ensure_user(self, user):
        self.call("POST", f"/users/{user}")

    def spawn_until_ready(self, user, limit_s=180):
        t0 = time.monotonic()
        status, body = self.call("POST", f"/users/{user}/server", {"user_options": {"profile": "standard"}})
        if status not in (201, 202):
            raise RuntimeError(f"starting {user}'s server answered {status}: {body}")
        while not self.ready(user):
            if time.monotonic() - t0 > limit_s:
                raise RuntimeError(f"{user}'s server not ready after {limit_s} s")
            time.sleep(0.02)
        return time.monotonic() - t0

    def stop(self, user):
        self.call("DELETE", f"/users/{user}/server")

    def wait_stopped(self, users, limit_s=120):
        deadline = time.monotonic() + limit_s
        for u in users:
            while self.has_server(u):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{u}'s server did not stop")
                time.sleep(0.2)

    def through_proxy(self, user):
        req = urllib.request.Request(f"{self.proxy}/user/{user}/api/status")
        req.add_header("Authorization", f"token {self.token}")
        try:
            with urllib.request.urlopen(req, timeout=5) as r:
                return r.status == 200 and f'"/user/{user}/"' in r.read().decode()
        except (urllib.error.URLError, OSError):
            return False

    def docker(self, *args):
        return subprocess.run(["docker", *args], check=True, capture_output=True, text=True).stdout

    def leader(self):
        for n in (1, 2, 3):
            try:
                out = self.docker("exec", f"{self.project}_hub{n}_1", "quorumhub", "ctl", "--output", "json", "status")
                lead = json.loads(out).get("leader")
                if lead:
                    return int(lead)
            except (subprocess.CalledProcessError, ValueError):
                continue
        return None

    def jobs(self):
        """{user: job id} of the cluster's running server jobs."""
        out = self.docker("exec", f"{self.project}_slurmctld_1", "squeue", "-h", "-t", "RUNNING", "-o", "%i %j")
        jobs = {}
        for line in out.splitlines():
            job, name = line.split(" ", 1)
            parts = name.split(".")
            if len(parts) >= 6 and parts[0] == "qh":
                jobs[parts[2]] = int(job)
        return jobs


def percentile(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--spawns", type=int, default=20, help="sequential spawns for the latency (default 20)")
    ap.add_argument("--concurrency", type=int, default=8, help="clients for the throughput (default 8)")
    ap.add_argument("--burst", type=int, default=40, help="servers the throughput run starts (default 40)")
    ap.add_argument("--running", type=int, default=50, help="servers running when the leader is killed (default 50)")
    ap.add_argument("--json", help="write the results here")
    args = ap.parse_args()
    if max(args.spawns, args.burst, args.running + 1) > 60:
        sys.exit("at most 60 users: deploy/slurm/passwd has u1 ... u60")
    env = env_file()
    hub = Hub(os.environ.get("QH_SLURM_NET", "10.233.0"), os.environ.get("QH_SLURM_PROJECT", "quorumhub-slurm"),
              env["QUORUMHUB_ADMIN_TOKEN"])
    users = [f"u{i}" for i in range(1, 61)]
    for u in users:
        hub.ensure_user(u)
    results = {}

    # Latency, one at a time.
    lat = []
    for u in users[: args.spawns]:
        lat.append(hub.spawn_until_ready(u))
    for u in users[: args.spawns]:
        hub.stop(u)
    hub.wait_stopped(users[: args.spawns])
    results["spawn_latency_s"] = {
        "n": len(lat),
        "p50": round(statistics.median(lat), 3),
        "p90": round(percentile(lat, 90), 3),
        "max": round(max(lat), 3),
    }
    print(f"latency: p50 {results['spawn_latency_s']['p50']} s, p90 {results['spawn_latency_s']['p90']} s over {len(lat)} spawns", flush=True)

    # Throughput at concurrency N.
    burst = users[: args.burst]
    t0 = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(args.concurrency) as pool:
        each = list(pool.map(hub.spawn_until_ready, burst))
    elapsed = time.monotonic() - t0
    results["throughput"] = {
        "concurrency": args.concurrency,
        "spawns": len(burst),
        "elapsed_s": round(elapsed, 2),
        "spawns_per_s": round(len(burst) / elapsed, 2),
        "p50_s": round(statistics.median(each), 3),
    }
    print(f"throughput: {results['throughput']['spawns_per_s']} spawns/s at c={args.concurrency} ({len(burst)} in {elapsed:.1f} s)", flush=True)

    # Failover with N running.
    running = users[: args.running]
    with concurrent.futures.ThreadPoolExecutor(args.concurrency) as pool:
        list(pool.map(lambda u: hub.ready(u) or hub.spawn_until_ready(u), running))
    before = hub.jobs()
    missing = [u for u in running if u not in before]
    if missing:
        sys.exit(f"no running job for {missing}")
    dead = hub.leader()
    t0 = time.monotonic()
    hub.docker("kill", "-s", "KILL", f"{hub.project}_hub{dead}_1")
    # The first write the cluster acknowledges again (a user created).
    probe_user = f"failover-probe-{int(time.time())}"
    while hub.call("POST", f"/users/{probe_user}", timeout=2)[0] != 201:
        time.sleep(0.02)
    t_leader = time.monotonic() - t0
    hub.call("DELETE", f"/users/{probe_user}")
    probe = users[args.running]
    hub.spawn_until_ready(probe)
    t_spawn = time.monotonic() - t0
    after = hub.jobs()
    changed = [u for u in running if after.get(u) != before[u]]
    unready = [u for u in running if not hub.ready(u)]
    unreachable = [u for u in running if not hub.through_proxy(u)]
    t_checked = time.monotonic() - t0
    hub.docker("start", f"{hub.project}_hub{dead}_1")
    results["failover"] = {
        "running": len(running),
        "first_write_s": round(t_leader, 2),
        "new_spawn_ready_s": round(t_spawn, 2),
        "all_checked_s": round(t_checked, 2),
        "jobs_changed": changed,
        "not_ready": unready,
        "unreachable": unreachable,
    }
    print(f"failover with {len(running)} running: writes again after {t_leader:.2f} s, a new spawn ready {t_spawn:.2f} s after the kill; "
          f"jobs changed {len(changed)}, not ready {len(unready)}, unreachable {len(unreachable)}", flush=True)
    for u in running + [probe]:
        hub.stop(u)
    hub.wait_stopped(running + [probe])
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
    if changed or unready or unreachable:
        sys.exit("failover changed, stopped or lost servers")


if __name__ == "__main__":
    main()
