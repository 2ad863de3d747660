#!/usr/bin/env python3
"""The JupyterHub side of qh-bench: the same workloads against JupyterHub.

    pip install jupyterhub==6.1.1 configurable-http-proxy==0.4.0
    python3 crates/bench/rival/jupyterhub_rival.py --json jupyterhub.json

Configuration as in shared/README.md: DummyAuthenticator, SQLite, the Python
port of configurable-http-proxy, a service token with admin:users. Users are
created through the proxy with `POST /hub/api/users/{name}`, one client and
32 concurrent clients; then the Hub is killed with SIGKILL and restarted, and
the time from the kill to the first 200 on an authenticated read is the
restart gap (the proxy is left running, as it would be in production).

Only loopback ports are used; every process is stopped at the end.
"""

import argparse
import http.client
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

TOKEN = "benchtoken0123456789abcdef"
PROXY = ("127.0.0.1", 18000)

CONFIG = f"""
c.JupyterHub.authenticator_class = 'dummy'
c.JupyterHub.spawner_class = 'simple'
c.JupyterHub.bind_url = 'http://127.0.0.1:18000'
c.JupyterHub.hub_bind_url = 'http://127.0.0.1:18081'
c.ConfigurableHTTPProxy.api_url = 'http://127.0.0.1:18001'
c.ConfigurableHTTPProxy.should_start = True
c.Authenticator.admin_users = {{'admin'}}
c.Authenticator.allow_all = True
c.JupyterHub.services = [{{'name': 'bench', 'api_token': '{TOKEN}'}}]
c.JupyterHub.load_roles = [{{'name': 'bench-role', 'scopes': ['admin:users', 'admin:servers', 'tokens', 'read:hub'], 'services': ['bench']}}]
c.JupyterHub.cleanup_servers = False
c.JupyterHub.cleanup_proxy = False
"""


def request(method, path, timeout=30):
    conn = http.client.HTTPConnection(*PROXY, timeout=timeout)
    try:
        conn.request(method, path, headers={"Authorization": f"token {TOKEN}"})
        resp = conn.getresponse()
        resp.read()
        return resp.status
    finally:
        conn.close()


def wait_api(limit):
    deadline = time.time() + limit
    while time.time() < deadline:
        try:
            if request("GET", "/hub/api/users?limit=1", timeout=2) == 200:
                return True
        except OSError:
            pass
        time.sleep(0.02)
    return False


def pct(sorted_values, p):
    if not sorted_values:
        return 0.0
    return sorted_values[min(len(sorted_values) - 1, round((len(sorted_values) - 1) * p))]


def creates(prefix, total, concurrency):
    lat = []
    lock = threading.Lock()
    counter = iter(range(total))
    failures = []

    def worker():
        while True:
            with lock:
                i = next(counter, None)
            if i is None:
                return
            t = time.perf_counter()
            status = request("POST", f"/hub/api/users/{prefix}-{i}")
            dt = time.perf_counter() - t
            with lock:
                if status == 201:
                    lat.append(dt)
                else:
                    failures.append(status)

    started = time.perf_counter()
    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - started
    lat.sort()
    return {
        "concurrency": concurrency,
        "requests": total,
        "failed": len(failures),
        "per_second": round(len(lat) / elapsed, 1),
        "p50_ms": round(pct(lat, 0.5) * 1000, 1),
        "p99_ms": round(pct(lat, 0.99) * 1000, 1),
    }


def start_hub(workdir, log):
    return subprocess.Popen(
        [shutil.which("jupyterhub") or "jupyterhub", "-f", "jupyterhub_config.py"],
        cwd=workdir,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--c1", type=int, default=300)
    ap.add_argument("--c32", type=int, default=1000)
    ap.add_argument("--json")
    args = ap.parse_args()
    if not shutil.which("jupyterhub"):
        sys.exit("jupyterhub is not installed: pip install jupyterhub==6.1.1 configurable-http-proxy==0.4.0")

    workdir = tempfile.mkdtemp(prefix="jh-rival-")
    with open(os.path.join(workdir, "jupyterhub_config.py"), "w") as f:
        f.write(CONFIG)
    log = open(os.path.join(workdir, "jupyterhub.log"), "w")
    hub = start_hub(workdir, log)
    report = {"server": "JupyterHub " + subprocess.run(["jupyterhub", "--version"], capture_output=True, text=True).stdout.strip()}
    try:
        if not wait_api(60):
            sys.exit(f"JupyterHub did not come up; see {workdir}/jupyterhub.log")
        print("creates at concurrency 1 ...", file=sys.stderr)
        report["create_users_c1"] = creates("c1", args.c1, 1)
        print(report["create_users_c1"], file=sys.stderr)
        print("creates at concurrency 32 ...", file=sys.stderr)
        report["create_users_c32"] = creates("c32", args.c32, 32)
        print(report["create_users_c32"], file=sys.stderr)

        print("hub kill -9 and restart ...", file=sys.stderr)
        os.kill(hub.pid, signal.SIGKILL)
        killed = time.time()
        hub.wait()
        hub = start_hub(workdir, log)
        ok = wait_api(120)
        report["hub_kill_restart_gap_ms"] = round((time.time() - killed) * 1000) if ok else None
        print(report["hub_kill_restart_gap_ms"], file=sys.stderr)
    finally:
        for p in [hub]:
            try:
                os.killpg(p.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        # The proxy was started by the hub in its own session: stop it too.
        subprocess.run(["pkill", "-f", "configurable-http-proxy.*18001"], check=False)
    print(json.dumps(report, indent=2))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=2)


if __name__ == "__main__":
    main()
