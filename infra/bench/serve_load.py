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
       [--workers N] [--servicenow-latency-ms 0] [--no-build]
"""
import argparse
import http.client
import json
import os
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

ROOT = common.ROOT
TOKEN = "bench-token-" + os.urandom(8).hex()


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
    ap.add_argument("--workers", type=int, default=None, help="relay serve --workers (default: its own)")
    ap.add_argument("--no-build", action="store_true")
    ap.add_argument("--servicenow-latency-ms", type=int, default=0, help="added to every ServiceNow answer")
    ap.add_argument("--timeout", type=int, default=300, help="give up after this many seconds")
    a = ap.parse_args()
    if not a.no_build:
        subprocess.run(["cargo", "build", "--release", "-p", "relay", "-p", "relay-sandbox"], cwd=ROOT, check=True)
    relay_bin = common.release_bin("relay")
    work = tempfile.mkdtemp(prefix="relay-bench-")
    sandbox = common.Sandbox(a.servicenow_latency_ms)
    relay = None
    deadline = time.time() + a.timeout
    try:
        relay, port, data = common.start_relay(sandbox, work, TOKEN, a.workers)
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
        rss = common.status_kib(relay.pid, "VmHWM")
        latencies.sort()
        pct = lambda p: common.pct(latencies, p) * 1000  # noqa: E731
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
        if relay is not None:
            common.stop_process(relay)
        sandbox.stop()


if __name__ == "__main__":
    main()
