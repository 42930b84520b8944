#!/usr/bin/env python3
"""Bounded load on `relay serve`, all on 127.0.0.1, stops by itself.

Starts the ServiceNow/Jira SANDBOX (`target/release/sandbox`), a `relay serve`
(release build) with the shipped `examples/jira-to-servicenow.yaml` aimed at
the sandbox, then posts N webhooks (issue created + comment for N/2 issues)
from C client threads with keep-alive connections. Reports:

- accepted/s and intake latency p50/p99 (202 answers, i.e. committed to the
  embedded queue),
- applied/s (all N handled: queue empty, incidents and comments in the sandbox),
- peak RSS of the relay process (VmHWM).

Usage: python3 infra/bench/serve_load.py [--requests 2000] [--concurrency 16]
       [--workers 4] [--no-build]
"""
import argparse
import http.client
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TARGET = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
TOKEN = "bench-token-" + os.urandom(8).hex()


def free_port():
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def peak_rss_kib(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def payloads(n):
    """Pairs (create, comment) per issue; a client posts a pair in order, as
    Jira sends one issue's events (a comment before its create would wait for
    correlation, which is correct but not what this measures)."""
    out = []
    for i in range(n // 2):
        issue = {"id": str(70000 + i), "key": f"BENCH-{i}",
                 "fields": {"summary": f"bench issue {i}", "priority": {"name": "High"}}}
        user = {"accountId": "712020:bench", "displayName": "Bench"}
        out.append([(f"c-{i}", {"webhookEvent": "jira:issue_created", "issue_event_type_name": "issue_created",
                                "user": user, "issue": issue}),
                    (f"m-{i}", {"webhookEvent": "comment_created", "issue": issue,
                                "comment": {"id": str(80000 + i), "body": f"comment {i}", "author": user}})])
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=2000)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--workers", type=int, default=4)
    ap.add_argument("--no-build", action="store_true")
    ap.add_argument("--timeout", type=int, default=300, help="give up after this many seconds")
    a = ap.parse_args()
    if not a.no_build:
        subprocess.run(["cargo", "build", "--release", "-p", "relay", "-p", "relay-sandbox"], cwd=ROOT, check=True)
    relay_bin = os.path.join(TARGET, "release", "relay")
    sandbox_bin = os.path.join(TARGET, "release", "sandbox")

    work = tempfile.mkdtemp(prefix="relay-bench-")
    sandbox = subprocess.Popen([sandbox_bin], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    urls = json.loads(sandbox.stdout.readline())
    with open(os.path.join(ROOT, "examples", "jira-to-servicenow.yaml")) as f:
        config = f.read().replace("https://example.service-now.com", urls["servicenow"]).replace(
            "https://example.atlassian.net", urls["jira"])
    with open(os.path.join(work, "relay.yaml"), "w") as f:
        f.write(config)
    secrets = os.path.join(work, "secrets.yaml")
    fd = os.open(secrets, os.O_WRONLY | os.O_CREAT, 0o600)
    os.write(fd, (f"secrets:\n  relay/webhook:\n    token: {TOKEN}\n    hmac: {os.urandom(8).hex()}\n"
                  "  relay/servicenow:\n    username: relay.integration\n    password: snow-password\n"
                  "  relay/jira:\n    email: relay@example.com\n    api_token: jira-api-token\n").encode())
    os.close(fd)
    port = free_port()
    data = os.path.join(work, "data")
    relay = subprocess.Popen([relay_bin, "serve", "--config", os.path.join(work, "relay.yaml"), "--secrets", secrets,
                              "--data-dir", data, "--listen", f"127.0.0.1:{port}", "--workers", str(a.workers)],
                             stdout=open(os.path.join(work, "relay.log"), "w"), stderr=subprocess.STDOUT)
    deadline = time.time() + a.timeout
    try:
        while True:
            try:
                c = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
                c.request("GET", "/health")
                if c.getresponse().status == 200:
                    break
            except OSError:
                pass
            if relay.poll() is not None or time.time() > deadline:
                sys.exit("relay serve did not start")
            time.sleep(0.05)

        work_items = payloads(a.requests)
        lock = threading.Lock()
        latencies, statuses = [], {}
        nxt = [0]

        def client():
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            while True:
                with lock:
                    i = nxt[0]
                    nxt[0] += 1
                if i >= len(work_items) or time.time() > deadline:
                    return
                for delivery, body in work_items[i]:
                    raw = json.dumps(body)
                    t0 = time.perf_counter()
                    try:
                        conn.request("POST", f"/webhooks/jira?token={TOKEN}", raw,
                                     {"Content-Type": "application/json", "X-Atlassian-Webhook-Identifier": delivery})
                        r = conn.getresponse()
                        r.read()
                        status = r.status
                    except OSError:
                        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
                        status = 0
                    dt = time.perf_counter() - t0
                    with lock:
                        latencies.append(dt)
                        statuses[status] = statuses.get(status, 0) + 1

        t_start = time.perf_counter()
        threads = [threading.Thread(target=client) for _ in range(a.concurrency)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        t_accepted = time.perf_counter() - t_start
        while True:
            out = subprocess.run([relay_bin, "queue", "stats", "--data-dir", data], capture_output=True, text=True).stdout
            if out.startswith("visible 0  in_flight 0  delayed 0"):
                break
            if time.time() > deadline:
                sys.exit(f"not drained before the timeout: {out}")
            time.sleep(0.05)
        t_applied = time.perf_counter() - t_start
        rss = peak_rss_kib(relay.pid)
        latencies.sort()
        pct = lambda p: latencies[min(len(latencies) - 1, int(p * len(latencies)))] * 1000
        accepted = statuses.get(202, 0)
        result = {
            "requests": 2 * len(work_items), "concurrency": a.concurrency, "workers": a.workers,
            "statuses": statuses, "accepted_per_s": round(accepted / t_accepted, 1),
            "applied_per_s": round(accepted / t_applied, 1),
            "intake_p50_ms": round(pct(0.50), 2), "intake_p99_ms": round(pct(0.99), 2),
            "wall_s": round(t_applied, 2), "peak_rss_mib": round(rss / 1024, 1) if rss else None,
            "queue": out.strip(),
        }
        result["log"] = os.path.join(work, "relay.log")
        print(json.dumps(result, indent=2))
    finally:
        relay.send_signal(signal.SIGTERM)
        try:
            relay.wait(timeout=30)
        except subprocess.TimeoutExpired:
            relay.kill()
        sandbox.stdin.close()
        sandbox.wait(timeout=10)


if __name__ == "__main__":
    main()
