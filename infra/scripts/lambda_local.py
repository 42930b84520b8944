#!/usr/bin/env python3
"""Lambda-true local run of the functions (no Docker, no AWS account).

`sam local` needs Docker, which these machines do not have; `cargo lambda
watch` emulates the Lambda Runtime API and function URLs instead. This script:

1. builds `ingress`, `worker`, `reconciler` and the `sandbox` (ServiceNow/Jira
   stand-ins),
2. starts the sandbox and `cargo lambda watch` on 127.0.0.1, with the
   functions' environment aimed at moto (SQS FIFO + DLQ, Secrets Manager, the
   worker's link store: a DynamoDB table shaped like the template's
   `LinksTable`) and a config that is `examples/jira-to-servicenow.yaml` aimed
   at the sandbox,
3. posts a real Jira fixture to the ingress through the function-URL
   emulation (`/lambda-url/ingress/webhooks/jira?token=…`) and expects 202,
4. reads the message from moto's SQS with the real API and checks its
   FIFO group and dedup ids,
5. invokes the worker through the Runtime API emulation with that message
   as a real SQS event and expects `{"batchItemFailures": []}`,
6. checks the incident in the ServiceNow sandbox through its Table API, and
   that the worker started on the links table in moto's DynamoDB,
7. makes an issue in the Jira sandbox without any webhook, invokes the
   reconciler through the Runtime API emulation once with `{"dry_run": true}`
   (reports it, enqueues nothing) and once with a scheduled event (enqueues
   it), and checks the watermark it stored in moto's SSM Parameter Store.

Needs: `cargo lambda` on PATH, moto at $RELAY_TEST_AWS_ENDPOINT, boto3 (moto's
dependency), the fixtures. Bounded: every wait has a deadline.
"""
import base64
import json
import os
import secrets as pysecrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FIXTURES = os.environ.get("RELAY_FIXTURES_DIR", os.path.join(ROOT, "..", "shared", "fixtures"))
FIXTURE = "mattermost__jira-issue-created_cloud.json"


def fail(msg):
    print(f"lambda-local: FAIL: {msg}", file=sys.stderr)
    sys.exit(1)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


# Loopback only: never through a proxy from the environment.
OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))
WATCH_LOG = None


def log_tail(path, lines=40):
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-lines:])
    except OSError as e:
        return f"(cannot read {path}: {e})"


def http(method, url, body=None, headers=None, timeout=180):
    """One request; an answer with any status is returned, a failure to get one
    (refused, reset, timed out) ends the run with the cause and the tail of
    `cargo lambda watch`'s log, where the reason usually is."""
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with OPENER.open(req, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()
    except (urllib.error.URLError, OSError) as e:
        where = f"\n--- last lines of {WATCH_LOG} ---\n{log_tail(WATCH_LOG)}" if WATCH_LOG else ""
        fail(f"{method} {url.split('?')[0]}: no answer within {timeout} s ({e!r}){where}")


def main():
    moto = os.environ.get("RELAY_TEST_AWS_ENDPOINT")
    if not moto:
        fail("RELAY_TEST_AWS_ENDPOINT is not set (run through infra/scripts/test.sh)")
    fixture_path = os.path.join(FIXTURES, "jira-webhooks", FIXTURE)
    if not os.path.exists(fixture_path):
        if os.environ.get("CI") in ("true", "1"):
            fail(f"fixture {fixture_path} is missing under CI=true")
        print(f"\n*** SKIPPED: fixtures missing ({fixture_path}) ***\n")
        return
    import boto3

    aws = dict(endpoint_url=moto, region_name="us-east-1", aws_access_key_id="test", aws_secret_access_key="test")
    sqs, sm, ssm = boto3.client("sqs", **aws), boto3.client("secretsmanager", **aws), boto3.client("ssm", **aws)
    ddb = boto3.client("dynamodb", **aws)

    t0 = time.time()
    # Each binary is built the way `cargo lambda watch` runs it (`cargo run --bin NAME`,
    # features resolved for that package alone), so no invocation waits for a compile.
    for args in (["--bin", "ingress"], ["--bin", "worker"], ["--bin", "reconciler"], ["-p", "relay-sandbox"]):
        subprocess.run(["cargo", "build", *args], cwd=ROOT, check=True)
    target = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
    work = tempfile.mkdtemp(prefix="lambda-local-")
    sandbox = watch = None
    try:
        sandbox = subprocess.Popen([os.path.join(target, "debug", "sandbox")], stdin=subprocess.PIPE,
                                   stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        urls = json.loads(sandbox.stdout.readline())

        run = pysecrets.token_hex(4)
        prefix = f"lambda-local-{run}"
        token = pysecrets.token_hex(16)
        for sid, value in [("webhook", {"token": token, "hmac": pysecrets.token_hex(16)}),
                           ("servicenow", {"username": "relay.integration", "password": "snow-password"}),
                           ("jira", {"email": "relay@example.com", "api_token": "jira-api-token"})]:
            sm.create_secret(Name=f"{prefix}/{sid}", SecretString=json.dumps(value))
        queue = sqs.create_queue(QueueName=f"{prefix}-events.fifo",
                                 Attributes={"FifoQueue": "true", "ContentBasedDeduplication": "false"})["QueueUrl"]
        dlq = sqs.create_queue(QueueName=f"{prefix}-dlq.fifo", Attributes={"FifoQueue": "true"})["QueueUrl"]
        # The worker's link store, keyed and with TTL as the template's LinksTable.
        links_table = f"{prefix}-links"
        ddb.create_table(TableName=links_table, BillingMode="PAY_PER_REQUEST",
                         AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"},
                                               {"AttributeName": "sk", "AttributeType": "S"}],
                         KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"},
                                    {"AttributeName": "sk", "KeyType": "RANGE"}])
        ddb.update_time_to_live(TableName=links_table,
                                TimeToLiveSpecification={"Enabled": True, "AttributeName": "expires_at"})
        with open(os.path.join(ROOT, "examples", "jira-to-servicenow.yaml")) as f:
            config = (f.read().replace("https://example.service-now.com", urls["servicenow"])
                      .replace("https://example.atlassian.net", urls["jira"]).replace("relay/", f"{prefix}/"))
        config_path = os.path.join(work, "relay.yaml")
        with open(config_path, "w") as f:
            f.write(config)

        port = free_port()
        watermarks = f"/jira-relay/{prefix}/reconcile"
        env = dict(os.environ, RELAY_CONFIG=config_path, RELAY_QUEUE_URL=queue, RELAY_DLQ_URL=dlq,
                   RELAY_WATERMARK_PREFIX=watermarks, RELAY_LINKS_TABLE=links_table,
                   RELAY_MAX_RECEIVE_COUNT="5", RELAY_STAGE="test", AWS_ENDPOINT_URL=moto, AWS_REGION="us-east-1",
                   AWS_ACCESS_KEY_ID="test", AWS_SECRET_ACCESS_KEY="test", AWS_EC2_METADATA_DISABLED="true")
        global WATCH_LOG
        WATCH_LOG = os.path.join(work, "watch.log")
        log = open(WATCH_LOG, "w")
        # --ignore-changes: a file written under the checkout while the test runs must not
        # restart a function in the middle of an invocation.
        watch = subprocess.Popen(["cargo", "lambda", "watch", "--ignore-changes", "-A", "127.0.0.1", "-P", str(port)],
                                 cwd=ROOT, env=env,
                                 stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.time() + 120
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if watch.poll() is not None or time.time() > deadline:
                    fail(f"cargo lambda watch did not start\n--- {log.name} ---\n{log_tail(log.name)}")
                time.sleep(0.2)

        # 3. The ingress through the function-URL emulation.
        with open(fixture_path, "rb") as f:
            body = f.read()
        key = json.loads(body)["issue"]["key"]
        delivery = f"lambda-local-{run}"
        status, answer = http("POST", f"http://127.0.0.1:{port}/lambda-url/ingress/webhooks/jira?token={token}", body,
                              {"Content-Type": "application/json", "X-Atlassian-Webhook-Identifier": delivery})
        if status != 202:
            fail(f"ingress answered {status}: {answer[:300]!r}\n--- {log.name} ---\n{log_tail(log.name)}")
        print(f"lambda-local: ingress (cargo lambda watch, function URL) → 202 {answer.decode()}")

        # 4. The message in moto's SQS.
        got = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=1, AttributeNames=["All"],
                                  VisibilityTimeout=60).get("Messages", [])
        if len(got) != 1:
            fail(f"expected one message in SQS, got {len(got)}")
        m = got[0]
        attrs = m["Attributes"]
        issue_id = json.loads(body)["issue"]["id"]
        # The deduplication id names the change (the issue's creation), not the delivery, so
        # that a webhook and a reconciliation sweep for the same change dedup.
        if (attrs.get("MessageGroupId") != f"jira:{issue_id}"
                or attrs.get("MessageDeduplicationId") != f"jira:issue:{issue_id}:created"):
            fail(f"unexpected FIFO ids: {attrs}")
        print(f"lambda-local: SQS message {m['MessageId']} group {attrs['MessageGroupId']}")

        # 5. The worker with that message as a real SQS event.
        event = {"Records": [{
            "messageId": m["MessageId"], "receiptHandle": m["ReceiptHandle"], "body": m["Body"],
            "attributes": attrs, "messageAttributes": {}, "md5OfBody": m["MD5OfBody"], "eventSource": "aws:sqs",
            "eventSourceARN": f"arn:aws:sqs:us-east-1:123456789012:{prefix}-events.fifo", "awsRegion": "us-east-1"}]}
        status, answer = http("POST", f"http://127.0.0.1:{port}/2015-03-31/functions/worker/invocations",
                              json.dumps(event).encode(), {"Content-Type": "application/json"}, timeout=300)
        if status != 200 or json.loads(answer) != {"batchItemFailures": []}:
            fail(f"worker answered {status}: {answer[:300]!r}\n--- {log.name} ---\n{log_tail(log.name)}")
        print(f"lambda-local: worker (cargo lambda watch, SQS event) → {answer.decode()}")

        # 6. The incident in the ServiceNow sandbox, read through its API.
        auth = base64.b64encode(b"relay.integration:snow-password").decode()
        status, answer = http("GET", f"{urls['servicenow']}/api/now/table/incident?sysparm_query=correlation_id%3D{key}"
                                     "&sysparm_fields=number,short_description,correlation_id,state",
                              headers={"Authorization": f"Basic {auth}", "Accept": "application/json"})
        result = json.loads(answer).get("result", [])
        if status != 200 or len(result) != 1:
            fail(f"expected one incident for {key}, got {status} {result}")
        print(f"lambda-local: ServiceNow sandbox holds {result[0]['number']} for {key}: {result[0]['short_description']}")
        # The worker runs on the DynamoDB link store, not the in-memory fallback: it says so
        # at start (its only log line about the store), and whatever it stored has the
        # table's shape.
        worker_log = log_tail(log.name, lines=2000)
        if '"link store: DynamoDB"' not in worker_log or "RELAY_LINKS_TABLE is not set" in worker_log:
            fail(f"the worker did not start on the DynamoDB link store {links_table}\n--- {log.name} ---\n"
                 f"{log_tail(log.name)}")
        stored = ddb.scan(TableName=links_table, ConsistentRead=True)["Items"]
        if any(set(i) - {"pk", "sk", "value", "expires_at"} for i in stored):
            fail(f"unexpected attributes in {links_table}: {stored[:5]}")
        # The create left its pairing and the change's "seen" mark in the table.
        kinds = {i["pk"]["S"].split("/")[0] for i in stored}
        pair_pk = f"rec/servicenow/correlation_id/{key}"
        if not {"rec", "seen"} <= kinds or not any(i["pk"]["S"] == pair_pk for i in stored):
            fail(f"expected the pair {pair_pk} and a seen mark in {links_table}, got {sorted(kinds)}")
        print(f"lambda-local: worker link store DynamoDB {links_table}, {len(stored)} entries "
              f"{sorted(i['pk']['S'].split('/')[0] for i in stored)}")

        # 7. The reconciler: an issue whose webhook never came, a hand-run dry run, then the
        #    scheduled sweep.
        jira_auth = base64.b64encode(b"relay@example.com:jira-api-token").decode()
        adf = {"type": "doc", "version": 1,
               "content": [{"type": "paragraph", "content": [{"type": "text", "text": "lost webhook"}]}]}
        status, answer = http("POST", f"{urls['jira']}/rest/api/3/issue", json.dumps({"fields": {
            "project": {"key": "SUP"}, "issuetype": {"name": "Incident"}, "summary": "never delivered",
            "description": adf}}).encode(),
            {"Authorization": f"Basic {jira_auth}", "Content-Type": "application/json"})
        if status != 201:
            fail(f"Jira sandbox answered {status}: {answer[:300]!r}")
        lost = json.loads(answer)["key"]
        scheduled = {"version": "0", "id": run, "detail-type": "Scheduled Event", "source": "aws.events",
                     "account": "123456789012", "time": "2026-05-01T10:15:00Z", "region": "us-east-1",
                     "resources": [f"arn:aws:events:us-east-1:123456789012:rule/{prefix}-reconcile"], "detail": {}}
        for payload in ({"dry_run": True}, scheduled):
            status, answer = http("POST", f"http://127.0.0.1:{port}/2015-03-31/functions/reconciler/invocations",
                                  json.dumps(payload).encode(), {"Content-Type": "application/json"}, timeout=300)
            summary = json.loads(answer) if status == 200 else {}
            eps = summary.get("endpoints", [])
            if len(eps) != 1 or eps[0].get("endpoint") != "jira" or eps[0].get("outcome") != "swept":
                fail(f"reconciler answered {status}: {answer[:500]!r}\n--- {log.name} ---\n{log_tail(log.name)}")
            found = any(d.get("key") == lost and d.get("drift") == "missing" for d in eps[0]["drift"])
            if not found or (eps[0]["enqueued"] == 0) != summary["dry_run"]:
                fail(f"reconciler: expected {lost} missing, enqueued only without dry_run: {summary}")
            print(f"lambda-local: reconciler (dry_run={summary['dry_run']}) → jira swept, "
                  f"{eps[0]['scanned']} scanned, {eps[0]['drift_total']} drift, {eps[0]['enqueued']} enqueued")
        got = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10, AttributeNames=["All"]).get("Messages", [])
        if not any(json.loads(m["Body"]).get("origin") == "reconcile" for m in got):
            fail(f"no envelope with origin reconcile on the queue: {[m['Body'][:200] for m in got]}")
        stored = json.loads(ssm.get_parameter(Name=f"{watermarks}/jira")["Parameter"]["Value"])
        if not stored.get("watermark", {}).get("since") or "lease" in stored:
            fail(f"unexpected watermark in SSM: {stored}")
        print(f"lambda-local: SSM {watermarks}/jira holds watermark since {stored['watermark']['since']}")
        print(f"lambda-local: ok in {time.time() - t0:.1f} s")
    finally:
        if watch is not None and watch.poll() is None:
            os.killpg(watch.pid, signal.SIGTERM)
            try:
                watch.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(watch.pid, signal.SIGKILL)
        if sandbox is not None:
            sandbox.stdin.close()
            try:
                sandbox.wait(timeout=10)
            except subprocess.TimeoutExpired:
                sandbox.kill()

if __name__ == "__main__":
    main()
