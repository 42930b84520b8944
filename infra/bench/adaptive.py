#!/usr/bin/env python3
"""Adaptive concurrency against a ServiceNow that degrades with concurrency.
Everything binds 127.0.0.1 and stops by itself.

The sandbox ServiceNow models an instance's `API_INT` semaphore
(`--servicenow-threads T --servicenow-queue Q`, `--servicenow-latency-ms L`):
T calls are handled at once in L ms each, Q more wait their turn (latency
grows past T concurrent calls), any call beyond T + Q gets a 429 at once.

For each setting of the ServiceNow connection's `concurrency` block, a fresh
sandbox and a fresh `relay serve` (default worker loops) get `--requests`
real Cloud `jira:issue_created` webhooks as fast as they are accepted; the
bench waits until every incident exists and reports applied/s (incidents /
time from first send to last create) and the share of ServiceNow calls
answered 429. The settings: a sweep of fixed limits (`adaptive: false`,
`max: N`), then the adaptive limit (`adaptive: true`, ceiling `--ceiling`).

Passes when the adaptive run applies at least 80 % of the best fixed
setting's applied/s with at most 1 % of its calls answered 429; otherwise
exits 1 (after printing the table). Every run must apply every incident
once (no duplicates) or the bench fails.

usage: adaptive.py [--requests 600] [--latency-ms 50] [--threads 8] [--queue 8]
                   [--sweep 2,4,8,12,16,24,32,48] [--ceiling 64] [--no-build] [--json FILE]
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402
import compare  # noqa: E402


def run(a, base, concurrency):
    work = tempfile.mkdtemp(prefix="relay-bench-adaptive-")
    token = "bench-token-" + os.urandom(8).hex()
    sandbox = common.Sandbox(a.latency_ms, a.threads, a.queue)
    proc, port, _ = common.start_relay(sandbox, work, token, servicenow_concurrency=concurrency)
    deadline = time.time() + a.timeout
    label = "adaptive" if concurrency["adaptive"] else f"fixed {concurrency['max']}"
    try:
        hooks = compare.webhooks(base, f"AD{concurrency['max']}{int(concurrency['adaptive'])}",
                                 a.requests, 0)
        results, _ = common.drive(port, compare.prepared(hooks, "/webhooks/jira", token), 16, deadline)
        sandbox.wait_incidents(len(hooks), deadline, stall_s=60)
    finally:
        common.stop_process(proc)
        records = sandbox.stop()
    s = compare.summarize(hooks, results, 1.0, records)
    calls = sandbox.stats.get("servicenow_requests", 0)
    refused = sandbox.stats.get("refused_429", 0)
    out = {"setting": label, **concurrency, "applied": s["applied"], "expected": s["expected"],
           "duplicates": s["duplicates"], "applied_per_s": s["applied_per_s"],
           "w2r_p50_ms": s["w2r_p50_ms"], "w2r_p99_ms": s["w2r_p99_ms"],
           "servicenow_calls": calls, "refused_429": refused,
           "refused_pct": round(100.0 * refused / calls, 2) if calls else None}
    if s["applied"] < s["expected"] or s["duplicates"]:
        print(json.dumps(out), file=sys.stderr)
        sys.exit(f"{label}: applied {s['applied']}/{s['expected']}, {s['duplicates']} duplicate(s); see {work}")
    shutil.rmtree(work, ignore_errors=True)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--requests", type=int, default=600)
    ap.add_argument("--latency-ms", type=int, default=50)
    ap.add_argument("--threads", type=int, default=8, help="the sandbox's API_INT threads")
    ap.add_argument("--queue", type=int, default=8, help="calls that may wait for a thread")
    ap.add_argument("--sweep", default="2,4,8,12,16,24,32,48")
    ap.add_argument("--ceiling", type=int, default=64, help="concurrency.max of the adaptive run")
    ap.add_argument("--timeout", type=float, default=300.0, help="seconds per run at most")
    ap.add_argument("--no-build", action="store_true")
    ap.add_argument("--json", help="write the results here")
    a = ap.parse_args()
    if not a.no_build:
        subprocess.run(["cargo", "build", "--release", "-q", "-p", "relay", "-p", "relay-sandbox"],
                       cwd=common.ROOT, check=True)
    base = compare.fixture()
    load0 = os.getloadavg()
    rows = [run(a, base, {"max": int(n), "adaptive": False}) for n in a.sweep.split(",")]
    rows.append(run(a, base, {"max": a.ceiling, "adaptive": True}))
    load1 = os.getloadavg()
    print(f"ServiceNow: {a.latency_ms} ms per call, {a.threads} threads, {a.queue} queued, 429 beyond; "
          f"{a.requests} webhooks per run; load average {load0[0]:.1f} -> {load1[0]:.1f}")
    print("| setting | applied/s | webhook→record p50 | p99 | ServiceNow calls | 429s | 429 share |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['setting']} | {r['applied_per_s']} | {r['w2r_p50_ms']} ms | {r['w2r_p99_ms']} ms | "
              f"{r['servicenow_calls']} | {r['refused_429']} | {r['refused_pct']} % |")
    best = max(rows[:-1], key=lambda r: r["applied_per_s"])
    ad = rows[-1]
    share = ad["applied_per_s"] / best["applied_per_s"] if best["applied_per_s"] else 0.0
    verdict = share >= 0.8 and (ad["refused_pct"] or 0.0) <= 1.0
    print(f"adaptive: {100 * share:.0f} % of the best fixed setting ({best['setting']}, "
          f"{best['applied_per_s']}/s), {ad['refused_pct']} % of calls answered 429: "
          + ("PASS" if verdict else "FAIL (needs >= 80 % and <= 1 %)"))
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"rows": rows, "load_average": [load0[0], load1[0]], "pass": verdict}, f, indent=2)
    sys.exit(0 if verdict else 1)


if __name__ == "__main__":
    main()
