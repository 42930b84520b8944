#!/usr/bin/env python3
"""`relay serve` side by side with n8n: the same Jira → ServiceNow flow, the
same bounded load, the same machine, in the same run. Everything binds
127.0.0.1 and stops by itself.

For each ServiceNow latency (default 0 ms and 50 ms) and each target:
1. a fresh SANDBOX ServiceNow contract server (`target/release/sandbox`),
2. the target:
   - relay: `relay serve` on examples/jira-to-servicenow.yaml (embedded
     SQLite queue, `--workers` worker loops);
   - n8n: a pinned n8n from npm, installed by this script into
     `.bench/n8n-VERSION/` (gitignored), running infra/bench/n8n-workflow.json
     (Webhook → IF whitelist → Set mapping → HTTP Request), SQLite, no UI, no
     telemetry, 127.0.0.1;
3. a warm-up (`--warmup` webhooks, waited for until applied),
4. "load": `--requests` real Cloud `jira:issue_created` webhooks (the
   fixture, ~13 KB, with its own key per request; every `--echo-every`-th
   one comes from the integration user and must be dropped) from
   `--concurrency` keep-alive connections as fast as answered (closed loop),
   then waits until every expected incident exists in the sandbox;
5. "paced": `--paced-requests` more at `--paced-rate`/s, below both targets'
   capacity, so webhook-to-record is the pipeline's latency, not a backlog's.

Prints per run: accepted/s, intake p50/p99, applied/s (incidents created /
time from first send to last create), webhook-to-record p50/p99 (send →
incident stored, per issue), webhook-to-call p50/p99 (send → the creating
`POST` arrived at the sandbox: the target's own share, without the added
ServiceNow latency), peak RSS (sum over the process tree, sampled every
50 ms) and the ratios relay/n8n.

usage: compare.py [--requests 2000] [--concurrency 16] [--latency-ms 0,50]
                  [--targets relay,n8n] [--workers N] [--warmup 100]
                  [--paced-requests 300] [--paced-rate 10]
                  [--n8n-version 2.8.4] [--no-build] [--json FILE]
"""
import argparse
import itertools
import json
import random
import os
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

N8N_VERSION = "2.8.4"
# n8n-nodes-base depends on xlsx from cdn.sheetjs.com (not a registry this
# machine reaches); the last xlsx published on npm stands in for it. The
# workflow here never loads it.
XLSX_OVERRIDE = "0.18.5"
ECHO_USER = "557058:relay-integration-user"
PRIORITIES = ["Highest", "High", "Medium", "Low", "Lowest"]
FIXTURE = "jira-webhooks/mattermost__jira-issue-created_cloud.json"


def fixture():
    d = os.environ.get("RELAY_FIXTURES_DIR") or os.path.join(common.ROOT, "..", "shared", "fixtures")
    path = os.path.join(d, FIXTURE)
    if not os.path.exists(path):
        sys.exit(f"fixture {path} not found (set RELAY_FIXTURES_DIR)")
    with open(path) as f:
        return json.load(f)


# Jira issue ids, distinct across phases and runs: the relay deduplicates by change
# (`issue:<id>:created`), so a phase reusing another's ids would be deduplicated, not
# measured. A random start keeps runs against a kept sandbox apart too.
ISSUE_IDS = itertools.count(random.SystemRandom().randrange(10**8, 9 * 10**8, 10**6))


def webhooks(base, prefix, n, echo_every):
    """[(key, body bytes, expected to become an incident)]"""
    out = []
    for i in range(n):
        v = json.loads(json.dumps(base))
        key = f"{prefix}-{i}"
        v["issue"]["key"] = key
        v["issue"]["id"] = str(next(ISSUE_IDS))
        v["issue"]["fields"]["summary"] = f"bench issue {i} of run {prefix}"
        v["issue"]["fields"]["priority"]["name"] = PRIORITIES[i % len(PRIORITIES)]
        echo = echo_every > 0 and i % echo_every == echo_every - 1
        if echo:
            v["user"]["accountId"] = ECHO_USER
        v["timestamp"] = int(time.time() * 1000)
        out.append((key, json.dumps(v).encode(), not echo))
    return out


def prepared(hooks, path, token):
    return [common.request_bytes(f"{path}?token={token}", body,
                                 {"X-Atlassian-Webhook-Identifier": f"bench-{key}"})
            for key, body, _ in hooks]


# ---------------------------------------------------------------- n8n

def n8n_dir(version):
    return os.path.join(common.ROOT, ".bench", f"n8n-{version}")


def install_n8n(version):
    """npm install of the pinned n8n into .bench/n8n-VERSION (once)."""
    d = n8n_dir(version)
    pkg_json = os.path.join(d, "node_modules", "n8n", "package.json")
    if os.path.exists(pkg_json):
        with open(pkg_json) as f:
            if json.load(f)["version"] == version:
                return d
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "package.json"), "w") as f:
        json.dump({"private": True, "dependencies": {"n8n": version},
                   "overrides": {"xlsx": XLSX_OVERRIDE}}, f, indent=2)
    print(f"installing n8n {version} into {d} (npm, several minutes the first time)", file=sys.stderr)
    # No install-time analytics (scarf) and no other phoning home.
    env = dict(os.environ, SCARF_ANALYTICS="false", DO_NOT_TRACK="1")
    subprocess.run(["npm", "install", "--no-audit", "--no-fund", "--loglevel=error"], cwd=d, env=env, check=True,
                   timeout=3600)
    return d


def n8n_env(home, port, sandbox, token):
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "LANG", "TZ")}
    env.update({
        "HOME": home, "N8N_USER_FOLDER": home,
        "N8N_LISTEN_ADDRESS": "127.0.0.1", "N8N_HOST": "127.0.0.1", "N8N_PORT": str(port),
        "N8N_PROTOCOL": "http", "WEBHOOK_URL": f"http://127.0.0.1:{port}/",
        "DB_TYPE": "sqlite", "N8N_ENCRYPTION_KEY": "bench-" + os.urandom(12).hex(),
        "N8N_DISABLE_UI": "true", "N8N_DIAGNOSTICS_ENABLED": "false",
        "N8N_VERSION_NOTIFICATIONS_ENABLED": "false", "N8N_TEMPLATES_ENABLED": "false",
        "N8N_PERSONALIZATION_ENABLED": "false", "N8N_HIRING_BANNER_ENABLED": "false",
        "N8N_COMMUNITY_PACKAGES_ENABLED": "false", "N8N_AI_ENABLED": "false",
        "N8N_LICENSE_AUTO_RENEW_ENABLED": "false", "N8N_LICENSE_SERVER_URL": "http://127.0.0.1:9/",
        "N8N_DYNAMIC_BANNERS_ENABLED": "false", "EXTERNAL_FRONTEND_HOOKS_URLS": "",
        "N8N_PUBLIC_API_DISABLED": "true", "N8N_SECURE_COOKIE": "false",
        "N8N_RUNNERS_BROKER_LISTEN_ADDRESS": "127.0.0.1",
        "N8N_RUNNERS_BROKER_PORT": str(common.free_port()),
        "N8N_BLOCK_ENV_ACCESS_IN_NODE": "false",
        "N8N_LOG_LEVEL": os.environ.get("BENCH_N8N_LOG_LEVEL", "warn"), "NODE_ENV": "production",
        # Give n8n its fastest setting: successful executions are not stored
        # (errors are, so a failing workflow shows up).
        "EXECUTIONS_DATA_SAVE_ON_SUCCESS": "none", "EXECUTIONS_DATA_SAVE_ON_ERROR": "all",
        "EXECUTIONS_DATA_SAVE_ON_PROGRESS": "false", "EXECUTIONS_DATA_SAVE_MANUAL_EXECUTIONS": "false",
        # Read by the workflow's expressions.
        "BENCH_WEBHOOK_TOKEN": token, "BENCH_SN_URL": sandbox.servicenow, "BENCH_SN_BASIC": sandbox.basic,
    })
    return env


def start_n8n(install, sandbox, work, token):
    home = os.path.join(work, "n8n-home")
    os.makedirs(home, exist_ok=True)
    port = common.free_port()
    env = n8n_env(home, port, sandbox, token)
    cli = [shutil.which("node") or "node", os.path.join(install, "node_modules", "n8n", "bin", "n8n")]
    log = open(os.path.join(work, "n8n.log"), "w")
    wf = os.path.join(os.path.dirname(os.path.abspath(__file__)), "n8n-workflow.json")
    with open(wf) as f:
        wf_id = json.load(f)["id"]
    for step in (["import:workflow", f"--input={wf}"], ["publish:workflow", f"--id={wf_id}"]):
        r = subprocess.run(cli + step, env=env, stdout=log, stderr=subprocess.STDOUT, timeout=300)
        if r.returncode != 0:
            sys.exit(f"n8n {step[0]} failed ({r.returncode}), see {log.name}")
    proc = subprocess.Popen(cli + ["start"], env=env, stdout=log, stderr=subprocess.STDOUT)
    common.wait_http(port, "/healthz", proc, time.time() + 180)
    return proc, port


# ---------------------------------------------------------------- one run

def summarize(hooks, results, wall, records):
    """Figures of one phase: `hooks` as sent, `results` from common.drive,
    `records` [(incident, created_unix_ms, arrived_unix_ms)] from the sandbox.

    Besides webhook-to-record (send → incident stored), "webhook-to-call"
    (send → the creating `POST` arrived at the sandbox): the target's own
    share of webhook-to-record, without the added ServiceNow latency."""
    sent = {hooks[i][0]: ms for i, ms, _, _ in results}
    expected_keys = {k for k, _, e in hooks if e}
    created = {}
    arrived = {}
    copies = {}
    for rec, ms, at in records:
        key = rec.get("correlation_id", "")
        if key in sent:
            if key not in created:
                created[key], arrived[key] = ms, at
            copies[key] = copies.get(key, 0) + 1
    applied = [k for k in created if k in expected_keys]
    w2r = sorted(created[k] - sent[k] for k in applied)
    w2c = sorted(arrived[k] - sent[k] for k in applied if arrived[k] is not None)
    lat = sorted(r[2] * 1000 for r in results)
    statuses = {}
    for r in results:
        statuses[r[3]] = statuses.get(r[3], 0) + 1
    accepted = sum(n for code, n in statuses.items() if 200 <= code < 300)  # relay 202, n8n 200
    span_s = (max(created.values()) - min(sent.values())) / 1000 if created else None
    # To 0.01 ms: a paced p99 of about 3 ms rounded to 0.1 ms moves a ratio
    # of about 5 by up to 2 %, enough to print 5.0 for 4.95.
    ms2 = lambda v: round(v, 2) if v is not None else None  # noqa: E731
    return {
        "requests": len(results), "statuses": statuses, "accepted_per_s": round(accepted / wall, 1),
        "intake_p50_ms": ms2(common.pct(lat, 0.50)), "intake_p99_ms": ms2(common.pct(lat, 0.99)),
        "expected": len(expected_keys), "applied": len(applied), "echo_leaked": len(created) - len(applied),
        "duplicates": sum(c - 1 for c in copies.values()),
        "applied_per_s": round(len(applied) / span_s, 1) if span_s else 0.0,
        "w2r_p50_ms": ms2(common.pct(w2r, 0.50)), "w2r_p99_ms": ms2(common.pct(w2r, 0.99)),
        "w2c_p50_ms": ms2(common.pct(w2c, 0.50)), "w2c_p99_ms": ms2(common.pct(w2c, 0.99)),
    }


def run_target(target, a, latency, base, install):
    """Warm-up, then the closed-loop load (throughput), then a paced load
    below both targets' capacity (webhook-to-record latency without a backlog)."""
    work = tempfile.mkdtemp(prefix=f"relay-bench-{target}-")
    token = "bench-token-" + os.urandom(8).hex()
    sandbox = common.Sandbox(latency)
    if target == "relay":
        proc, port, _ = common.start_relay(sandbox, work, token, a.workers)
        path = "/webhooks/jira"
    else:
        proc, port = start_n8n(install, sandbox, work, token)
        path = "/webhook/jira"
    sampler = common.RssSampler(proc.pid)
    deadline = time.time() + a.timeout
    records = []
    try:
        idle = common.RssSampler(proc.pid, interval=3600).stop()["peak_rss_mib"]
        # Warm-up; the first answers may be 404 until n8n has registered the webhook.
        warm = webhooks(base, f"WARM{latency}", a.warmup, a.echo_every)
        warm_req = prepared(warm, path, token)
        while True:
            res, _ = common.drive(port, warm_req[:1], 1, deadline)
            if (res and 200 <= res[0][3] < 300) or time.time() > deadline:
                break
            time.sleep(0.2)
        common.drive(port, warm_req[1:], a.concurrency, deadline)
        done = sum(1 for _, _, e in warm if e)
        got = sandbox.wait_incidents(done, deadline)
        if got < done:
            sys.exit(f"{target}: warm-up applied {got}/{done}; see {work}")

        phases = []
        for name, n, rate in (("load", a.requests, None), ("paced", a.paced_requests, a.paced_rate)):
            if n <= 0:
                continue
            hooks = webhooks(base, f"{name.upper()}{latency}", n, a.echo_every)
            cpu0 = common.cpu_seconds(proc.pid)
            results, wall = common.drive(port, prepared(hooks, path, token), a.concurrency, deadline, rate)
            done += sum(1 for _, _, e in hooks if e)
            sandbox.wait_incidents(done, deadline)
            cpu = common.cpu_seconds(proc.pid) - cpu0
            phases.append((name, hooks, results, wall, cpu))
        rss = sampler.stop()
    finally:
        sampler.stop()
        common.stop_process(proc)
        records = sandbox.stop()
    out = {"target": target, "sn_latency_ms": latency, "idle_rss_mib": idle, **rss, "work_dir": work}
    for name, hooks, results, wall, cpu in phases:
        out[name] = summarize(hooks, results, wall, records)
        # The target's own CPU (its whole process tree) per webhook sent.
        out[name]["cpu_ms_per_webhook"] = round(cpu * 1000 / max(1, len(hooks)), 2)
    # A phase that applied less than it sent, made duplicates or let an echo through
    # measured something else: say so and fail, rather than print a figure.
    wrong = [f"{name}: applied {p['applied']}/{p['expected']}, {p['duplicates']} duplicate(s), "
             f"{p['echo_leaked']} echo leak(s)"
             for name, p in ((n, out[n]) for n, *_ in phases)
             if p["applied"] < p["expected"] or p["duplicates"] or p["echo_leaked"]]
    if wrong:
        print(json.dumps(out, indent=2), file=sys.stderr)
        sys.exit(f"{target} at {latency} ms: " + "; ".join(wrong) + f" (see {work})")
    return out


def ratio(a, b):
    return round(a / b, 2) if a and b else None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=2000)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--workers", type=int, default=None, help="relay serve --workers (default: its own)")
    ap.add_argument("--warmup", type=int, default=100)
    # 300, every 10th an echo: 270 applied, so the p99 is the 4th slowest
    # (of 90 it was the slowest: `pct` takes index floor(0.99 n)).
    ap.add_argument("--paced-requests", type=int, default=300, help="webhooks of the paced phase (0: none)")
    ap.add_argument("--paced-rate", type=float, default=10.0, help="webhooks/s of the paced phase")
    ap.add_argument("--echo-every", type=int, default=10, help="every Nth webhook is from the integration user")
    ap.add_argument("--latency-ms", default="0,50", help="added ServiceNow latencies, comma-separated")
    ap.add_argument("--targets", default="relay,n8n")
    ap.add_argument("--n8n-version", default=N8N_VERSION)
    ap.add_argument("--timeout", type=int, default=600, help="per target and latency, seconds")
    ap.add_argument("--no-build", action="store_true")
    ap.add_argument("--json", help="also write the results here")
    a = ap.parse_args()
    targets = [t for t in a.targets.split(",") if t]
    if not a.no_build:
        subprocess.run(["cargo", "build", "--release", "-p", "relay", "-p", "relay-sandbox"], cwd=common.ROOT,
                       check=True)
    install = install_n8n(a.n8n_version) if "n8n" in targets else None
    base = fixture()
    runs = []
    for latency in [int(x) for x in a.latency_ms.split(",") if x]:
        for target in targets:
            print(f"-- {target}, ServiceNow latency {latency} ms", file=sys.stderr)
            r = run_target(target, a, latency, base, install)
            print(json.dumps(r), file=sys.stderr)
            runs.append(r)

    cols = ["accepted_per_s", "intake_p50_ms", "intake_p99_ms", "applied", "duplicates", "echo_leaked",
            "applied_per_s", "w2r_p50_ms",
            "w2r_p99_ms", "w2c_p50_ms", "w2c_p99_ms", "cpu_ms_per_webhook"]
    print("| target | SN latency | phase | " + " | ".join(cols) + " | idle RSS MiB | peak RSS MiB | sum VmHWM MiB |")
    print("|" + "---|" * (len(cols) + 6))
    for r in runs:
        for phase in ("load", "paced"):
            p = r.get(phase)
            if p:
                cells = [f"{p['applied']}/{p['expected']}" if c == "applied" else str(p[c]) for c in cols]
                print(f"| {r['target']} | {r['sn_latency_ms']} ms | {phase} | " + " | ".join(cells)
                      + f" | {r['idle_rss_mib']} | {r['peak_rss_mib']} | {r['sum_vmhwm_mib']} |")
    by = {(r["target"], r["sn_latency_ms"]): r for r in runs}
    for latency in sorted({r["sn_latency_ms"] for r in runs}):
        rl, rn = by.get(("relay", latency)), by.get(("n8n", latency))
        if not (rl and rn):
            continue
        parts = []
        if "load" in rl and "load" in rn:
            ll, nl = rl["load"], rn["load"]
            parts += [f"accepted/s relay/n8n {ratio(ll['accepted_per_s'], nl['accepted_per_s'])}x",
                      f"applied/s {ratio(ll['applied_per_s'], nl['applied_per_s'])}x",
                      f"intake p99 n8n/relay {ratio(nl['intake_p99_ms'], ll['intake_p99_ms'])}x"]
        parts.append(f"peak RSS n8n/relay {ratio(rn['peak_rss_mib'], rl['peak_rss_mib'])}x")
        if "paced" in rl and "paced" in rn:
            lp, np_ = rl["paced"], rn["paced"]
            parts += [f"paced w2r p99 n8n/relay {ratio(np_['w2r_p99_ms'], lp['w2r_p99_ms'])}x",
                      f"paced w2c p99 n8n/relay {ratio(np_['w2c_p99_ms'], lp['w2c_p99_ms'])}x"]
        print(f"ratios at {latency} ms: " + ", ".join(parts))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(runs, f, indent=2)


if __name__ == "__main__":
    main()
