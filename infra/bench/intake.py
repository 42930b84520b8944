#!/usr/bin/env python3
"""Intake with durable 202s: how many webhooks/s `relay serve` accepts, each
answered only after its queue commit is on disk, against the disk's own
ceiling for one fsync per webhook. All on 127.0.0.1; stops by itself.

1. The single-fsync ceiling, measured here, now, in the relay's data
   directory: a loop of a 100-byte write + fsync for 2 s. A queue that
   committed each webhook on its own could not accept more per second.
2. A SANDBOX ServiceNow/Jira and `relay serve` (release build, embedded
   queue, `synchronous=FULL`, its default worker loops).
3. `--requests` real Cloud `jira:issue_created` webhooks (the fixture,
   ~13 KB, each its own issue) from `--concurrency` keep-alive connections
   as fast as answered, by the native driver `target/release/drive` (the
   Python driver cannot send this fast on 2 cores).
4. Stops the relay and checks that every accepted webhook is an incident
   or still in the queue (nothing acknowledged is lost), then prints
   accepted/s beside the ceiling.

Two runs: ServiceNow answering after 2 s (the workers mostly wait: intake
has the machine) and after 0 ms (the workers apply at full speed on the same
2 cores while intake runs).

usage: intake.py [--requests 10000] [--concurrency 64] [--no-build] [--json FILE]
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


def fsync_ceiling(directory, seconds=2.0):
    path = os.path.join(directory, "fsync-probe")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    n, t0 = 0, time.perf_counter()
    try:
        while time.perf_counter() - t0 < seconds:
            os.write(fd, b"x" * 100)
            os.fsync(fd)
            n += 1
    finally:
        os.close(fd)
        os.unlink(path)
    return n / (time.perf_counter() - t0)


def queue_stats(data):
    """`relay queue stats` of a stopped relay as a dict of its counts."""
    out = subprocess.run([common.release_bin("relay"), "queue", "stats", "--data-dir", data],
                         capture_output=True, text=True, check=True).stdout.split()
    return {k: v for k, v in zip(out[::2], out[1::2])}


def phase(a, work, token, reqs, latency_ms):
    """One run: a fresh sandbox (ServiceNow answering after `latency_ms`) and
    relay, the requests sent, the relay stopped; every accepted webhook must
    be an incident or still in the queue."""
    run_dir = tempfile.mkdtemp(prefix=f"sn{latency_ms}-", dir=work)
    sandbox = common.Sandbox(latency_ms)
    proc, port, data = common.start_relay(sandbox, run_dir, token)
    try:
        out = subprocess.run([common.release_bin("drive"), "--port", str(port), "--requests", reqs,
                              "--concurrency", str(a.concurrency), "--timeout-s", str(int(a.timeout))],
                             capture_output=True, text=True, check=True).stdout
        drive = json.loads(out)
    finally:
        common.stop_process(proc)
        incidents = len(sandbox.stop())
    q = queue_stats(data)
    queued = sum(int(q.get(k, 0)) for k in ("visible", "in_flight", "delayed"))
    accepted = drive["statuses"].get("202", 0)
    r = {
        "servicenow_latency_ms": latency_ms, "statuses": drive["statuses"],
        "accepted_per_s": round(accepted / drive["wall_s"], 1),
        "intake_p50_ms": round(drive["p50_ms"], 2), "intake_p99_ms": round(drive["p99_ms"], 2),
        "incidents": incidents, "still_queued": queued, "dead": int(q.get("dead", 0)),
    }
    # An incident applied but not yet acknowledged when the relay stopped is
    # counted twice (it comes back and is recognised); none may be missing.
    if incidents + queued < accepted or r["dead"]:
        print(json.dumps(r), file=sys.stderr)
        sys.exit(f"accepted {accepted}, but only {incidents} incidents + {queued} queued; see {run_dir}")
    return r


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--requests", type=int, default=10000)
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("--timeout", type=float, default=300.0)
    ap.add_argument("--no-build", action="store_true")
    ap.add_argument("--json", help="write the result here")
    a = ap.parse_args()
    if not a.no_build:
        subprocess.run(["cargo", "build", "--release", "-q", "-p", "relay", "-p", "relay-sandbox"],
                       cwd=common.ROOT, check=True)
    work = tempfile.mkdtemp(prefix="relay-bench-intake-")
    token = "bench-token-" + os.urandom(8).hex()
    hooks = compare.webhooks(compare.fixture(), "INTAKE", a.requests, 0)
    reqs = os.path.join(work, "requests.bin")
    with open(reqs, "wb") as f:
        for r in compare.prepared(hooks, "/webhooks/jira", token):
            f.write(f"{len(r)}\n".encode() + r)
    load0 = os.getloadavg()[0]
    ceiling = fsync_ceiling(work)
    # A remote ServiceNow (2 s per call): the workers mostly wait, intake has the
    # machine. Then a 0 ms sandbox: the workers apply at full speed on the same
    # 2 cores while intake runs.
    phases = [phase(a, work, token, reqs, ms) for ms in (2000, 0)]
    load1 = os.getloadavg()[0]
    result = {"requests": a.requests, "concurrency": a.concurrency,
              "single_fsync_ceiling_per_s": round(ceiling, 1), "phases": phases,
              "load_average": [load0, load1]}
    print(json.dumps(result, indent=2))
    for p in phases:
        print(f"ServiceNow {p['servicenow_latency_ms']} ms: {p['accepted_per_s']} accepted/s "
              f"(p50 {p['intake_p50_ms']} ms, p99 {p['intake_p99_ms']} ms) = "
              f"{p['accepted_per_s'] / ceiling:.2f}x the single-fsync ceiling of {ceiling:.0f}/s measured "
              f"in the same run; load average {load0:.1f} -> {load1:.1f}")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(result, f, indent=2)
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
