#!/usr/bin/env python3
"""Cold start of a jira-relay Lambda binary: process start -> ready for the
first event.

"Ready" is the moment the binary, after its init (tracing, config, AWS
clients), asks the Lambda Runtime API for its first invocation
(GET /2018-06-01/runtime/invocation/next). This script plays the Runtime API
on 127.0.0.1, starts the binary N times, and prints the distribution. It uses
a native build of the binary (the arm64 bootstrap cannot run on this x86
machine); the init work is the same code.

With --serve, BINARY is `relay` and "ready" is the first 200 from
`relay serve`'s /health (config and secrets loaded, embedded queue opened,
listener bound, workers started); the script polls a fresh connection every
0.5 ms, so the figure is within about a millisecond.

With --watch, BINARY is the function name (ingress, worker or reconciler) and the
script starts `cargo lambda watch` (debug build, as `infra/scripts/
lambda_local.py` uses it), then times the first invocation (cargo's
up-to-date check + process start + init + the handler) and the warm ones
after it (the handler through the emulator); one cold start per watch start.
The binary's own start -> ready is the Runtime API figure above.

usage: coldstart.py BINARY [--runs 20] [--config FILE] [--serve | --watch]
"""
import argparse
import http.server
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time

ready_at = None
ready_event = threading.Event()


class RuntimeApi(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 (http.server naming)
        global ready_at
        if self.path.startswith("/2018-06-01/runtime/invocation/next"):
            ready_at = time.perf_counter()
            ready_event.set()
            # Hold the request: a real Runtime API long-polls here.
            time.sleep(0.5)
            self.send_response(503)
            self.end_headers()
        else:
            self.send_response(404)
            self.end_headers()

    def log_message(self, *args):
        pass


CONFIG = """version: 1
endpoints:
  - name: jira
    kind: jira
    stage: test
    auth:
      token: relay/webhook#token
"""


def function_env(tmp, config, name, runtime_api):
    """The environment of a Lambda function binary; nothing it calls leaves the machine."""
    return {
        "PATH": os.environ.get("PATH", ""),
        "AWS_LAMBDA_RUNTIME_API": runtime_api,
        "AWS_LAMBDA_FUNCTION_NAME": name,
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "128",
        "AWS_LAMBDA_LOG_GROUP_NAME": "/aws/lambda/" + name,
        "AWS_LAMBDA_LOG_STREAM_NAME": "bench",
        "AWS_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_CONFIG_FILE": os.path.join(tmp, "none"),
        "AWS_SHARED_CREDENTIALS_FILE": os.path.join(tmp, "none"),
        "RELAY_CONFIG": config,
        "RELAY_QUEUE_URL": "http://127.0.0.1:9/000000000000/bench.fifo",
        "RELAY_DLQ_URL": "http://127.0.0.1:9/000000000000/bench-dlq.fifo",
        "RELAY_WATERMARK_PREFIX": "/jira-relay/bench/reconcile",
        # Nothing leaves the machine, whatever the init does.
        "AWS_ENDPOINT_URL": "http://127.0.0.1:9",
        "RUST_LOG": "warn",
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("binary")
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--config")
    ap.add_argument("--serve", action="store_true", help="BINARY is relay; time `relay serve` to /health 200")
    ap.add_argument("--watch", action="store_true", help="BINARY is ingress or worker; time under cargo lambda watch")
    args = ap.parse_args()
    if args.serve:
        return serve(args)
    if args.watch:
        return watch(args)

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), RuntimeApi)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]

    with tempfile.TemporaryDirectory() as tmp:
        config = args.config
        if not config:
            config = os.path.join(tmp, "relay.yaml")
            with open(config, "w") as f:
                f.write(CONFIG)
        env = function_env(tmp, config, os.path.basename(args.binary), f"127.0.0.1:{port}")
        times = []
        for _ in range(args.runs):
            ready_event.clear()
            start = time.perf_counter()
            proc = subprocess.Popen([args.binary], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            if not ready_event.wait(10):
                proc.kill()
                err = proc.stderr.read().decode(errors="replace")
                sys.exit(f"binary never asked for an invocation within 10 s:\n{err}")
            times.append((ready_at - start) * 1000)
            proc.kill()
            proc.wait()
    server.shutdown()
    times.sort()
    size = os.path.getsize(args.binary)
    print(f"binary: {args.binary} ({size / 1e6:.2f} MB)")
    print(
        f"start -> ready over {len(times)} runs: min {times[0]:.1f} ms, "
        f"median {statistics.median(times):.1f} ms, "
        f"p90 {times[int(len(times) * 0.9) - 1]:.1f} ms, max {times[-1]:.1f} ms"
    )


def serve(args):
    import http.client
    import socket

    def report(times):
        times.sort()
        print(f"binary: {args.binary} serve ({os.path.getsize(args.binary) / 1e6:.2f} MB)")
        print(f"start -> /health 200 over {len(times)} runs: min {times[0]:.1f} ms, "
              f"median {statistics.median(times):.1f} ms, p90 {times[int(len(times) * 0.9) - 1]:.1f} ms, "
              f"max {times[-1]:.1f} ms")

    with tempfile.TemporaryDirectory() as tmp:
        config = args.config or os.path.join(tmp, "relay.yaml")
        if not args.config:
            with open(config, "w") as f:
                f.write(CONFIG)
        secrets = os.path.join(tmp, "secrets.yaml")
        fd = os.open(secrets, os.O_WRONLY | os.O_CREAT, 0o600)
        os.write(fd, b"secrets:\n  relay/webhook:\n    token: coldstart-token-0123456789\n")
        os.close(fd)
        times = []
        for run in range(args.runs):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
            s.close()
            cmd = [args.binary, "serve", "--config", config, "--secrets", secrets,
                   "--data-dir", os.path.join(tmp, f"data-{run}"), "--listen", f"127.0.0.1:{port}"]
            start = time.perf_counter()
            proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                    env={"PATH": os.environ.get("PATH", ""), "RUST_LOG": "warn"})
            deadline = start + 10
            while True:
                try:
                    c = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
                    c.request("GET", "/health")
                    if c.getresponse().status == 200:
                        break
                except OSError:
                    pass
                if proc.poll() is not None or time.perf_counter() > deadline:
                    proc.kill()
                    sys.exit(f"relay serve not ready within 10 s:\n{proc.stderr.read().decode(errors='replace')}")
                time.sleep(0.0005)
            times.append((time.perf_counter() - start) * 1000)
            proc.terminate()
            proc.wait(timeout=10)
        report(times)


def watch(args):
    import json
    import signal
    import socket
    import urllib.request

    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    name = args.binary
    if name not in ("ingress", "worker"):
        sys.exit("--watch takes ingress or worker")
    subprocess.run(["cargo", "build", "-p", name], cwd=root, check=True)
    if name == "ingress":
        path, body = "/lambda-url/ingress/health", None
    else:
        path, body = "/2015-03-31/functions/worker/invocations", json.dumps({"Records": []}).encode()
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def invoke(port):
        t = time.perf_counter()
        req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=body, method="POST" if body else "GET")
        with opener.open(req, timeout=120) as r:
            r.read()
            if r.status != 200:
                sys.exit(f"{name} answered {r.status}")
        return (time.perf_counter() - t) * 1000

    colds, warms = [], []
    with tempfile.TemporaryDirectory() as tmp:
        config = args.config or os.path.join(tmp, "relay.yaml")
        if not args.config:
            with open(config, "w") as f:
                f.write(CONFIG)
        for _ in range(args.runs):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
            s.close()
            env = dict(function_env(tmp, config, name, ""), CARGO_TARGET_DIR=os.environ.get(
                "CARGO_TARGET_DIR", os.path.join(root, "target")), HOME=os.environ.get("HOME", "/root"))
            env.pop("AWS_LAMBDA_RUNTIME_API")
            proc = subprocess.Popen(["cargo", "lambda", "watch", "-A", "127.0.0.1", "-P", str(port)], cwd=root,
                                    env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                    start_new_session=True)
            try:
                deadline = time.time() + 60
                while True:
                    try:
                        socket.create_connection(("127.0.0.1", port), timeout=1).close()
                        break
                    except OSError:
                        if proc.poll() is not None or time.time() > deadline:
                            sys.exit("cargo lambda watch did not start")
                        time.sleep(0.05)
                colds.append(invoke(port))
                warms.extend(invoke(port) for _ in range(10))
            finally:
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait(timeout=30)
    colds.sort()
    warms.sort()
    print(f"{name} under cargo lambda watch over {len(colds)} starts: first invocation median "
          f"{statistics.median(colds):.0f} ms (min {colds[0]:.0f}, max {colds[-1]:.0f}); warm invocation "
          f"median {statistics.median(warms):.1f} ms, p90 {warms[int(len(warms) * 0.9) - 1]:.1f} ms")


if __name__ == "__main__":
    main()
