"""Shared pieces of the process-level benchmarks in this folder (all on
127.0.0.1, every loop bounded in count and time).

- `Sandbox`: the ServiceNow/Jira contract servers (`target/release/sandbox`),
  optionally with an added ServiceNow latency; counts incidents while running
  and returns each incident with its creation time when stopped.
- `start_relay`: `relay serve` on the shipped Jira → ServiceNow example.
- `RssSampler`: peak resident memory of a process tree (sum over the tree).
- `drive`: a small keep-alive HTTP/1.1 load driver on raw sockets (cheaper
  per request than http.client, so the client takes less of the 2 cores).
"""
import base64
import http.client
import json
import os
import socket
import subprocess
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TARGET = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
SN_USER, SN_PASSWORD = "relay.integration", "snow-password"  # the sandbox's defaults


def release_bin(name, profile="release"):
    return os.path.join(TARGET, profile, name)


def relay_bin():
    """`relay` of the cargo profile RELAY_BENCH_PROFILE names (default release;
    `profiling` keeps symbols for perf). The sandbox stays the release one."""
    return release_bin("relay", os.environ.get("RELAY_BENCH_PROFILE", "release"))


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def pct(sorted_values, p):
    """The p-quantile (0..1) of an ascending list, None when empty."""
    if not sorted_values:
        return None
    return sorted_values[min(len(sorted_values) - 1, int(p * len(sorted_values)))]


def wait_http(port, path, proc, deadline, ok=(200,)):
    """Polls GET path until it answers one of `ok`; exits when proc dies."""
    while True:
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            c.request("GET", path)
            if c.getresponse().status in ok:
                return
        except OSError:
            pass
        if proc.poll() is not None:
            sys.exit(f"process {proc.args[0]} exited with {proc.returncode} before it was ready")
        if time.time() > deadline:
            sys.exit(f"{proc.args[0]} not ready on 127.0.0.1:{port}{path} before the deadline")
        time.sleep(0.05)


class Sandbox:
    """`sandbox --records-json [--servicenow-latency-ms N] [--servicenow-threads
    T --servicenow-queue Q]` as a child process."""

    def __init__(self, latency_ms=0, threads=0, queue=0):
        args = [release_bin("sandbox"), "--records-json"]
        if latency_ms:
            args += ["--servicenow-latency-ms", str(latency_ms)]
        if threads:
            args += ["--servicenow-threads", str(threads), "--servicenow-queue", str(queue)]
        self.proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL, text=True)
        urls = json.loads(self.proc.stdout.readline())
        self.servicenow, self.jira = urls["servicenow"], urls["jira"]
        self.port = int(self.servicenow.rsplit(":", 1)[1])
        self.basic = base64.b64encode(f"{SN_USER}:{SN_PASSWORD}".encode()).decode()
        # Filled by stop(): {"servicenow_requests": n, "refused_429": n}.
        self.stats = {}

    def incident_count(self):
        """Incidents stored now (Table API `X-Total-Count`)."""
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        c.request("GET", "/api/now/table/incident?sysparm_limit=1&sysparm_fields=sys_id",
                  headers={"Authorization": "Basic " + self.basic, "Accept": "application/json"})
        r = c.getresponse()
        r.read()
        return int(r.getheader("X-Total-Count", "0"))

    def wait_incidents(self, expected, deadline, stall_s=20.0):
        """Waits until `expected` incidents exist, the deadline passes or the
        count has not moved for `stall_s`; returns the last count."""
        last, moved = -1, time.time()
        while True:
            n = self.incident_count()
            if n >= expected or time.time() > deadline:
                return n
            if n != last:
                last, moved = n, time.time()
            elif time.time() - moved > stall_s:
                return n
            time.sleep(0.05)

    def stop(self):
        """Stops the sandbox; returns [(record, created unix ms, arrived unix ms)]
        of every incident: when it was stored (after the added latency) and when
        the `POST` that created it had arrived (before it; None if no `POST`
        did). Times to the microsecond (a whole-millisecond stamp would take up
        to 1 ms off a webhook-to-record time of about one)."""
        self.proc.stdin.close()
        out = self.proc.stdout.read()
        self.proc.wait(timeout=30)
        rows = [json.loads(line) for line in out.splitlines() if line.strip()]
        for r in rows:
            if "stats" in r:
                self.stats = r["stats"]
        arrived = lambda r: r["create_arrived_unix_us"] / 1000 if r.get("create_arrived_unix_us") else None  # noqa: E731
        return [(r["record"], r["created_unix_us"] / 1000, arrived(r)) for r in rows if "record" in r]


def start_relay(sandbox, work, token, workers=None, log_name="relay.log", servicenow_concurrency=None):
    """`relay serve` on examples/jira-to-servicenow.yaml aimed at the sandbox
    (`workers`: `--workers`, None for the default; `servicenow_concurrency`:
    the ServiceNow connection's `concurrency` block as a dict, None for the
    default). Returns (process, port, data_dir) once /health answers."""
    with open(os.path.join(ROOT, "examples", "jira-to-servicenow.yaml")) as f:
        config = f.read().replace("https://example.service-now.com", sandbox.servicenow).replace(
            "https://example.atlassian.net", sandbox.jira)
    if servicenow_concurrency is not None:
        block = "    concurrency: {" + ", ".join(
            f"{k}: {json.dumps(v)}" for k, v in servicenow_concurrency.items()) + "}\n"
        anchor = "    table: incident\n"
        if anchor not in config:
            sys.exit("examples/jira-to-servicenow.yaml: the servicenow connection's `table: incident` line moved")
        config = config.replace(anchor, anchor + block, 1)
    cfg = os.path.join(work, "relay.yaml")
    with open(cfg, "w") as f:
        f.write(config)
    secrets = os.path.join(work, "secrets.yaml")
    fd = os.open(secrets, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    # JSON strings are YAML strings: a random hex of digits only (or digits
    # with one `e`) would otherwise be read as a number, and refused.
    os.write(fd, (f"secrets:\n  relay/webhook:\n    token: {json.dumps(token)}\n"
                  f"    hmac: {json.dumps('bench-hmac-' + os.urandom(8).hex())}\n"
                  f"  relay/servicenow:\n    username: {SN_USER}\n    password: {SN_PASSWORD}\n"
                  "  relay/jira:\n    email: relay@example.com\n    api_token: jira-api-token\n").encode())
    os.close(fd)
    port = free_port()
    data = os.path.join(work, "data")
    proc = subprocess.Popen([relay_bin(), "serve", "--config", cfg, "--secrets", secrets,
                             "--data-dir", data, "--listen", f"127.0.0.1:{port}",
                             # One load generator on 127.0.0.1 is one client: the
                             # listener's per-client and per-endpoint rates are off.
                             "--client-rate", "0", "--endpoint-rate", "0"]
                            + (["--workers", str(workers)] if workers else []),
                            stdout=open(os.path.join(work, log_name), "w"), stderr=subprocess.STDOUT)
    wait_http(port, "/health", proc, time.time() + 60)
    return proc, port, data


def stop_process(proc, timeout=30):
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def tree_pids(root):
    """root and all its descendants (from /proc/*/stat)."""
    children = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                stat = f.read()
            ppid = int(stat[stat.rindex(")") + 2:].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(d))
    out, todo = [], [root]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def cpu_seconds(root):
    """User + system CPU time consumed so far by root and its descendants."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for p in tree_pids(root):
        try:
            with open(f"/proc/{p}/stat") as f:
                stat = f.read()
            fields = stat[stat.rindex(")") + 2:].split()
            total += int(fields[11]) + int(fields[12])
        except (OSError, ValueError, IndexError):
            continue
    return total / tick


def status_kib(pid, field):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return 0
    return 0


class RssSampler:
    """Samples the summed VmRSS of a process tree every `interval` seconds
    (peak of the sum) and keeps the summed VmHWM (sum of per-process peaks,
    an upper bound) until `stop()`."""

    def __init__(self, root_pid, interval=0.05):
        self.root, self.interval = root_pid, interval
        self.peak_kib, self.hwm_kib, self.processes = 0, {}, set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _sample(self):
        total = 0
        for p in tree_pids(self.root):
            rss = status_kib(p, "VmRSS")
            if rss:
                self.processes.add(p)
                total += rss
                self.hwm_kib[p] = max(self.hwm_kib.get(p, 0), status_kib(p, "VmHWM"))
        self.peak_kib = max(self.peak_kib, total)

    def _run(self):
        while not self._stop.is_set():
            self._sample()
            self._stop.wait(self.interval)

    def stop(self):
        self._sample()
        self._stop.set()
        self._thread.join(timeout=5)
        return {"peak_rss_mib": round(self.peak_kib / 1024, 1),
                "sum_vmhwm_mib": round(sum(self.hwm_kib.values()) / 1024, 1),
                "processes": len(self.processes)}


def request_bytes(path, body, headers):
    head = [f"POST {path} HTTP/1.1", "Host: 127.0.0.1", "Content-Type: application/json",
            f"Content-Length: {len(body)}"]
    head += [f"{k}: {v}" for k, v in headers.items()]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


def _read_response(sock, buf):
    """One HTTP/1.1 response from sock; returns (status, close, rest of buf)."""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(65536)
        if not chunk:
            raise OSError("connection closed")
        buf += chunk
    head, _, buf = buf.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    hdr = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        hdr[k.strip().lower()] = v.strip().lower()
    if hdr.get("transfer-encoding") == "chunked":
        while b"0\r\n\r\n" not in buf:
            chunk = sock.recv(65536)
            if not chunk:
                raise OSError("connection closed")
            buf += chunk
        buf = buf.split(b"0\r\n\r\n", 1)[1]
    else:
        n = int(hdr.get("content-length", "0"))
        while len(buf) < n:
            chunk = sock.recv(65536)
            if not chunk:
                raise OSError("connection closed")
            buf += chunk
        buf = buf[n:]
    return status, hdr.get("connection") == "close", buf


def drive(port, requests, concurrency, deadline, rate=None):
    """Sends the prepared request byte strings from `concurrency` keep-alive
    connections, each taking the next request when its previous one has been
    answered (closed loop), or, with `rate` (requests/s), not before request
    i's slot at start + i/rate (paced). Returns [(index, sent_unix_ms, latency_s, status)], status 0 on
    a transport error, and the wall time of the whole run in seconds."""
    lock = threading.Lock()
    nxt = [0]
    results = []

    def connect():
        s = socket.create_connection(("127.0.0.1", port), timeout=60)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return s

    start = time.perf_counter()

    def client():
        sock, buf, mine = None, b"", []
        while True:
            with lock:
                i = nxt[0]
                nxt[0] += 1
            if i >= len(requests) or time.time() > deadline:
                break
            if rate:
                time.sleep(max(0.0, start + i / rate - time.perf_counter()))
            sent = time.time() * 1000
            t0 = time.perf_counter()
            try:
                if sock is None:
                    sock, buf = connect(), b""
                sock.sendall(requests[i])
                status, close, buf = _read_response(sock, buf)
            except (OSError, ValueError, IndexError):
                status, close = 0, True
            if close and sock is not None:
                sock.close()
                sock = None
            mine.append((i, sent, time.perf_counter() - t0, status))
        if sock is not None:
            sock.close()
        with lock:
            results.extend(mine)

    threads = [threading.Thread(target=client) for _ in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sorted(results), time.perf_counter() - start
