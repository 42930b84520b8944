//! The bad-input matrix: every row of `tests/data/bad-input.yaml` run and
//! checked, and `docs/bad-input.md` kept in agreement with it.
//!
//! Ingress rows go through the ingress router twice: in-process
//! (`oneshot`) and over a real socket (`axum::serve` + reqwest). Worker rows
//! are posted to the ingress (202, queued once), then handed to
//! `Worker::run_batch` with a `MemoryInbox`, writing into the sandbox
//! ServiceNow and Jira servers. For each row the test checks the status or
//! outcome, that the reason was logged (tracing output captured), that
//! nothing panicked, and that nothing was lost: an accepted request is on
//! the queue exactly once, a refused one is not, a worker failure is either
//! reported for redelivery or in the dead letters with its reason.
//!
//! Payloads are derived from the real fixtures at test time (mutated
//! copies); the fixtures themselves stay in `../shared/fixtures`.

use crate::logcap::Captured;
use async_trait::async_trait;
use axum::body::Body;
use http::Request;
use relay_tests::jira_server::JiraServer;
use relay_tests::servicenow_server::{ServiceNowServer, DEFAULT_PASSWORD, DEFAULT_USER};
use relay_tests::{fixtures_dir, sign};
use serde::Deserialize;
use serde_json::{json, Value};
use shared::config::Config;
use shared::intake::router::{app, IngressState};
use shared::links::{Entry, LinkBackend, LinkError, LinkSettings, Links, Pair, Scope};
use shared::outbound::executor::Connectors;
use shared::outbound::rest::http_client;
use shared::outbound::{Budget, ConnectorSettings};
use shared::queue::MemoryQueue;
use shared::queue::{InMessage, MemoryInbox};
use shared::secrets::{LocalSecretStore, SecretError, SecretStore, SecretVersions};
use shared::support::clock::SystemClock;
use shared::worker::{BatchReport, BatchSettings, Worker};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tower::ServiceExt;

const TOKEN: &str = "matrix-token-3e7c";
const TOKEN_OLD: &str = "matrix-token-old-51aa";
const HMAC_KEY: &str = "matrix-hmac-90f1";
const LIMIT: usize = 4096;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

// ---------------------------------------------------------------------------
// The table

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Stage {
    Ingress,
    Worker,
}

#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
enum Expect {
    Status(u16),
    Outcome(String),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Fate {
    Queued,
    Refused,
    Applied,
    Filtered,
    Skipped,
    DeadLetter,
    Redelivered,
    Parked,
}

impl Fate {
    fn label(self) -> &'static str {
        match self {
            Fate::Queued => "queued once",
            Fate::Refused => "not queued",
            Fate::Applied => "applied",
            Fate::Filtered => "filtered (logged, acknowledged)",
            Fate::Skipped => "every rule skipped (reasons logged, acknowledged)",
            Fate::DeadLetter => "dead letter with its reason",
            Fate::Redelivered => "redelivered by the queue",
            Fate::Parked => "parked in the link store (not holding its queue group); replayed right after its create, dead-lettered `never_correlated` after 24 h",
        }
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Row {
    id: String,
    stage: Stage,
    input: String,
    expect: Expect,
    logged: String,
    fate: Fate,
}

impl Row {
    /// `field=value` of the `logged` column.
    fn logged(&self) -> (&str, &str) {
        self.logged
            .split_once('=')
            .unwrap_or_else(|| panic!("{}: `logged` must be field=value", self.id))
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Table {
    rows: Vec<Row>,
}

const TABLE: &str = "tests/data/bad-input.yaml";
const DOC: &str = "docs/bad-input.md";

fn table() -> Vec<Row> {
    let text = std::fs::read_to_string(repo().join(TABLE)).unwrap();
    let t: Table = serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("{TABLE}: {e}"));
    let mut ids: Vec<&str> = t.rows.iter().map(|r| r.id.as_str()).collect();
    ids.sort_unstable();
    let n = ids.len();
    ids.dedup();
    assert_eq!(ids.len(), n, "{TABLE}: duplicate ids");
    for r in &t.rows {
        match (&r.stage, &r.expect, r.fate) {
            (Stage::Ingress, Expect::Status(_), Fate::Queued | Fate::Refused) => {}
            (Stage::Worker, Expect::Outcome(_), f)
                if !matches!(f, Fate::Queued | Fate::Refused) => {}
            _ => panic!("{TABLE}: row {} mixes ingress and worker columns", r.id),
        }
        r.logged();
    }
    t.rows
}

fn cell(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

/// The Markdown document rendered from the table.
fn render(rows: &[Row]) -> String {
    let mut out = String::from(
        "# Bad input: what the relay does with it\n\n\
         Generated from `tests/data/bad-input.yaml` by `tests/tests/it/bad_input.rs`, which\n\
         runs every row; do not edit by hand (`RELAY_BLESS=1 cargo test -p relay-tests --test it\n\
         bad_input::doc` rewrites it). Every row also checks that nothing panicked and that\n\
         nothing was lost: an accepted call is on the queue exactly once, a refused one is not,\n\
         a message the worker cannot apply is redelivered or in the dead letters with its\n\
         reason. Callers only ever see a short fixed message (`{\"error\": …}`); the reason\n\
         is in the log line (`reason` field), and for the worker in the dead letter too.\n\n\
         ## Intake (`POST /webhooks/{endpoint}`)\n\n\
         Checked in-process and over a real socket. 503 answers carry `Retry-After`\n\
         (Jira retries 5xx, never 4xx).\n\n\
         | case | input | status | logged | fate |\n|---|---|---|---|---|\n",
    );
    for r in rows.iter().filter(|r| r.stage == Stage::Ingress) {
        let Expect::Status(s) = &r.expect else {
            unreachable!()
        };
        out.push_str(&format!(
            "| `{}` | {} | {} | `{}` | {} |\n",
            r.id,
            cell(&r.input),
            s,
            r.logged,
            r.fate.label()
        ));
    }
    out.push_str(
        "\n## Worker (a queued message)\n\n\
         Posted through the intake (202, queued once), then one `Worker::run_batch` against\n\
         the sandbox ServiceNow and Jira servers. The `reason` is the start of the reason in\n\
         the `processed` log line and in the dead letter.\n\n\
         | case | input | outcome | logged | fate |\n|---|---|---|---|---|\n",
    );
    for r in rows.iter().filter(|r| r.stage == Stage::Worker) {
        let Expect::Outcome(o) = &r.expect else {
            unreachable!()
        };
        out.push_str(&format!(
            "| `{}` | {} | {} | `{}` | {} |\n",
            r.id,
            cell(&r.input),
            o,
            r.logged,
            r.fate.label()
        ));
    }
    out
}

#[test]
fn doc_agrees_with_the_table() {
    let rendered = render(&table());
    let path = repo().join(DOC);
    if std::env::var_os("RELAY_BLESS").is_some() {
        std::fs::write(&path, &rendered).unwrap();
    }
    let doc = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        doc == rendered,
        "{DOC} does not match {TABLE}; regenerate it with \
         `RELAY_BLESS=1 cargo test -p relay-tests --test it bad_input::doc`"
    );
}

// ---------------------------------------------------------------------------
// Secret stores for the rows that need them

fn good_store() -> LocalSecretStore {
    LocalSecretStore::with_env([
        (
            "RELAY_SECRET_RELAY_WEBHOOK".to_owned(),
            json!({"token": TOKEN, "hmac": HMAC_KEY, "sn_user": "snow.sender", "sn_pass": "sender-pw-8"})
                .to_string(),
        ),
        (
            "RELAY_SECRET_RELAY_WEBHOOK__PREVIOUS".to_owned(),
            json!({"token": TOKEN_OLD}).to_string(),
        ),
        (
            "RELAY_SECRET_RELAY_SERVICENOW".to_owned(),
            json!({"username": DEFAULT_USER, "password": DEFAULT_PASSWORD}).to_string(),
        ),
        (
            "RELAY_SECRET_RELAY_JIRA".to_owned(),
            json!({"email": relay_tests::jira_server::DEFAULT_EMAIL,
                   "api_token": relay_tests::jira_server::DEFAULT_API_TOKEN})
            .to_string(),
        ),
    ])
}

/// A secret store that cannot be reached.
struct DownStore;

#[async_trait]
impl SecretStore for DownStore {
    async fn fetch(&self, id: &str) -> Result<Arc<SecretVersions>, SecretError> {
        Err(SecretError::Unavailable {
            id: id.to_owned(),
            detail: "connection refused".to_owned(),
        })
    }
}

// ---------------------------------------------------------------------------
// Ingress rows

const INGRESS_CONFIG: &str = "version: 1
limits:
  max_body_bytes: 4096
endpoints:
  - name: jira
    kind: jira
    stage: test
    auth: { token: relay/webhook#token, hmac: relay/webhook#hmac, require: any }
  - name: jira-strict
    kind: jira
    stage: prod
    auth: { token: relay/webhook#token, hmac: relay/webhook#hmac }
  - name: snow
    kind: servicenow
    stage: test
    auth: { basic: { username: relay/webhook#sn_user, password: relay/webhook#sn_pass } }
  - name: ghost
    kind: jira
    stage: test
    auth: { token: relay/absent#token }
  - name: keyless
    kind: jira
    stage: test
    auth: { token: relay/webhook#nokey }
";

/// One intake case: the request, sent `sends` times.
struct Case {
    method: &'static str,
    path: String,
    headers: Vec<(&'static str, String)>,
    body: Vec<u8>,
    chunked: bool,
    sends: usize,
    store_down: bool,
}

fn small_body() -> Vec<u8> {
    br#"{"webhookEvent":"jira:issue_created","issue_event_type_name":"issue_created","issue":{"id":"10001","key":"OPS-1","fields":{"summary":"Printer on fire"}},"user":{"accountId":"5b10a2844c20165700ede21g"}}"#.to_vec()
}

/// A JSON object of exactly `len` bytes.
fn body_of_len(len: usize) -> Vec<u8> {
    let mut b =
        br#"{"webhookEvent":"jira:issue_created","issue":{"id":"10002","key":"OPS-2"},"pad":""#
            .to_vec();
    assert!(b.len() + 2 <= len);
    b.resize(len - 2, b'a');
    b.extend_from_slice(b"\"}");
    b
}

fn nested(depth: usize) -> String {
    format!("{}{}{}", "{\"a\":".repeat(depth), "1", "}".repeat(depth))
}

fn ingress_case(id: &str) -> Case {
    let mut c = Case {
        method: "POST",
        path: format!("/webhooks/jira?token={TOKEN}"),
        headers: vec![("content-type", "application/json".to_owned())],
        body: small_body(),
        chunked: false,
        sends: 1,
        store_down: false,
    };
    let basic = |cred: &str| {
        use base64::Engine as _;
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(cred)
        )
    };
    let snow_body =
        br#"{"event":"incident.updated","sys_id":"9d385017c611228701d22104cc95c371","number":"INC0010019"}"#
            .to_vec();
    match id {
        "baseline" => {}
        "unknown-endpoint" => c.path = format!("/webhooks/nope?token={TOKEN}"),
        "unknown-path" => c.path = format!("/hooks/jira?token={TOKEN}"),
        "wrong-method" => {
            c.method = "GET";
            c.body.clear();
        }
        "endpoint-not-utf8" => c.path = format!("/webhooks/%FF?token={TOKEN}"),
        "endpoint-name-huge" => c.path = format!("/webhooks/{}?token={TOKEN}", "e".repeat(5000)),
        "missing-token" => c.path = "/webhooks/jira".into(),
        "bad-token" => c.path = "/webhooks/jira?token=wrong-token".into(),
        "bad-token-first-of-two" => {
            c.path = format!("/webhooks/jira?token=wrong-token&token={TOKEN}")
        }
        "previous-token" => c.path = format!("/webhooks/jira?token={TOKEN_OLD}"),
        "missing-signature" => c.path = format!("/webhooks/jira-strict?token={TOKEN}"),
        "bad-signature" => {
            c.path = "/webhooks/jira".into();
            c.headers
                .push(("x-hub-signature", sign("another-key", &c.body)));
        }
        "signature-of-other-body" => {
            c.path = "/webhooks/jira".into();
            c.headers.push(("x-hub-signature", sign(HMAC_KEY, &c.body)));
            c.body = body_of_len(300);
        }
        "malformed-signature" => {
            c.path = "/webhooks/jira".into();
            c.headers.push(("x-hub-signature", "sha256=zz".into()));
        }
        "signature-other-algorithm" => {
            c.path = "/webhooks/jira".into();
            c.headers.push((
                "x-hub-signature",
                sign(HMAC_KEY, &c.body).replace("sha256=", "sha1="),
            ));
        }
        "missing-basic" => {
            c.path = "/webhooks/snow".into();
            c.body = snow_body;
        }
        "malformed-basic" => {
            c.path = "/webhooks/snow".into();
            c.body = snow_body;
            c.headers.push(("authorization", "Basic !!!".into()));
        }
        "bad-basic" => {
            c.path = "/webhooks/snow".into();
            c.body = snow_body;
            c.headers
                .push(("authorization", basic("snow.sender:wrong-password")));
        }
        "endpoint-secret-missing" => c.path = format!("/webhooks/ghost?token={TOKEN}"),
        "endpoint-secret-key-missing" => c.path = format!("/webhooks/keyless?token={TOKEN}"),
        "secret-store-down" => c.store_down = true,
        "replayed-delivery" => {
            c.headers
                .push(("x-atlassian-webhook-identifier", "delivery-77".into()));
            c.sends = 2;
        }
        "replayed-body-without-id" => c.sends = 2,
        "delivery-id-huge" => c
            .headers
            .push(("x-atlassian-webhook-identifier", "d".repeat(10_000))),
        "retry-header-not-a-number" => c
            .headers
            .push(("x-atlassian-webhook-retry", "soon".into())),
        "non-json" => c.body = b"{not json".to_vec(),
        "json-array" => c.body = b"[1,2]".to_vec(),
        "json-string" => c.body = b"\"issue\"".to_vec(),
        "json-null" => c.body = b"null".to_vec(),
        "two-objects" => c.body = b"{} {}".to_vec(),
        "utf8-bom" => c.body = [&b"\xEF\xBB\xBF"[..], &small_body()].concat(),
        "missing-content-type" => c.headers.clear(),
        "wrong-content-type" => c.headers = vec![("content-type", "text/plain".into())],
        "form-content-type" => {
            c.headers = vec![(
                "content-type",
                "application/x-www-form-urlencoded".into(),
            )]
        }
        "json-suffix-content-type" => {
            c.headers = vec![(
                "content-type",
                "application/vnd.atlassian+json; charset=UTF-8".into(),
            )]
        }
        "empty-body" => c.body.clear(),
        "whitespace-body" => c.body = b" \r\n\t\n ".to_vec(),
        "body-at-limit" => c.body = body_of_len(LIMIT),
        "body-over-limit" => c.body = body_of_len(LIMIT + 1),
        "body-over-limit-chunked" => {
            c.body = body_of_len(LIMIT + 1);
            c.chunked = true;
        }
        "nested-too-deep" => c.body = nested(shared::intake::envelope::MAX_DEPTH + 1).into_bytes(),
        "nested-at-limit" => c.body = nested(shared::intake::envelope::MAX_DEPTH).into_bytes(),
        "huge-string" => c.body = body_of_len(LIMIT),
        "invalid-utf8" => {
            c.body = br#"{"webhookEvent":"jira:issue_created","x":"caf"#.to_vec();
            c.body.extend_from_slice(b"\xE9\"}");
        }
        "lone-surrogate-in-head" => {
            c.body = br#"{"webhookEvent":"\ud800","issue":{"id":"1","key":"A-1"}}"#.to_vec()
        }
        "lone-surrogate-in-payload" => {
            c.body = br#"{"webhookEvent":"jira:issue_created","issue":{"id":"1","key":"A-1","fields":{"summary":"\ud800"}}}"#.to_vec()
        }
        "number-out-of-range" => {
            c.body = br#"{"webhookEvent":"jira:issue_created","issue":{"id":"1","key":"A-1","fields":{"n":1e999}}}"#.to_vec()
        }
        "head-fields-wrong-types" => {
            c.body = br#"{"webhookEvent":5,"timestamp":"2019-1-30 15:51:34,870","issue":"OPS-3","user":[1,2],"comment":{"issueId":10014,"author":"x"}}"#.to_vec()
        }
        other => panic!("{TABLE}: ingress row `{other}` has no case in bad_input.rs"),
    }
    c
}

fn ingress_state(queue: Arc<MemoryQueue>, store_down: bool) -> IngressState {
    let secrets: Arc<dyn SecretStore> = if store_down {
        Arc::new(DownStore)
    } else {
        Arc::new(good_store())
    };
    IngressState {
        config: Arc::new(
            Config::from_yaml(INGRESS_CONFIG, "bad-input.yaml", |_| None).expect("valid config"),
        ),
        secrets,
        queue,
        clock: Arc::new(SystemClock),
    }
}

/// What one send came back with.
struct Answer {
    status: u16,
    retry_after: bool,
    body: Vec<u8>,
}

async fn send_oneshot(router: &axum::Router, c: &Case) -> Result<Answer, String> {
    let mut req = Request::builder().method(c.method).uri(&c.path);
    for (k, v) in &c.headers {
        req = req.header(*k, v);
    }
    let body = if c.chunked {
        Body::from_stream(crate::router::chunks(c.body.clone()))
    } else {
        Body::from(c.body.clone())
    };
    let req = req.body(body).unwrap();
    let router = router.clone();
    // In its own task, so a panic is seen as one (not as a failed test).
    let res = tokio::spawn(async move { router.oneshot(req).await })
        .await
        .map_err(|e| format!("the router panicked: {e}"))?
        .expect("the router never errors");
    let status = res.status().as_u16();
    let retry_after = res.headers().contains_key("retry-after");
    let body = axum::body::to_bytes(res.into_body(), usize::MAX)
        .await
        .unwrap()
        .to_vec();
    Ok(Answer {
        status,
        retry_after,
        body,
    })
}

async fn send_socket(base: &str, c: &Case) -> Result<Answer, String> {
    let client = reqwest::Client::new();
    let method = reqwest::Method::from_bytes(c.method.as_bytes()).unwrap();
    let mut req = client.request(method, format!("{base}{}", c.path));
    for (k, v) in &c.headers {
        req = req.header(*k, v);
    }
    let req = if c.chunked {
        req.body(reqwest::Body::wrap_stream(crate::router::chunks(
            c.body.clone(),
        )))
    } else {
        req.body(c.body.clone())
    };
    let res = req
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .map_err(|e| format!("no answer (did the handler panic?): {e}"))?;
    Ok(Answer {
        status: res.status().as_u16(),
        retry_after: res.headers().contains_key("retry-after"),
        body: res.bytes().await.map_err(|e| e.to_string())?.to_vec(),
    })
}

/// Checks one answer and the queue against the row; returns the failures.
fn check_ingress(
    row: &Row,
    answers: &[Answer],
    queue: &MemoryQueue,
    cap: &Captured,
) -> Vec<String> {
    let mut bad = Vec::new();
    let Expect::Status(expected) = row.expect else {
        unreachable!()
    };
    let last = answers.last().unwrap();
    for a in answers {
        if a.status != expected {
            bad.push(format!("status {} (expected {expected})", a.status));
        }
    }
    if last.status >= 400 {
        let fixed = serde_json::from_slice::<Value>(&last.body)
            .ok()
            .and_then(|v| v["error"].as_str().map(str::to_owned));
        if fixed.is_none() {
            bad.push(format!(
                "the error body is not the fixed JSON message: {:?}",
                String::from_utf8_lossy(&last.body)
            ));
        }
    }
    if last.status == 503 && !last.retry_after {
        bad.push("503 without Retry-After".into());
    }
    let (field, value) = row.logged();
    if !cap.has(field, value) {
        bad.push(format!("no log line with {field}={value}…"));
    }
    let queued = queue.len();
    match row.fate {
        Fate::Queued if queued != 1 => bad.push(format!("{queued} messages queued, expected 1")),
        Fate::Refused if queued != 0 => bad.push(format!("{queued} messages queued, expected 0")),
        _ => {}
    }
    bad
}

#[tokio::test]
async fn ingress_rows() {
    let rows: Vec<Row> = table()
        .into_iter()
        .filter(|r| r.stage == Stage::Ingress)
        .collect();
    assert!(rows.len() >= 40, "{} ingress rows", rows.len());
    let (cap, _guard) = Captured::start("info");
    let mut failures = Vec::new();
    for row in &rows {
        let case = ingress_case(&row.id);
        for mode in ["oneshot", "socket"] {
            cap.clear();
            let queue = Arc::new(MemoryQueue::new());
            let router = app(ingress_state(queue.clone(), case.store_down));
            let mut answers = Vec::new();
            let mut server = None;
            let base = if mode == "socket" {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                let base = format!("http://{}", listener.local_addr().unwrap());
                let r = router.clone();
                server = Some(tokio::spawn(async move {
                    axum::serve(listener, r).await.unwrap()
                }));
                base
            } else {
                String::new()
            };
            for _ in 0..case.sends {
                let got = if mode == "socket" {
                    send_socket(&base, &case).await
                } else {
                    send_oneshot(&router, &case).await
                };
                match got {
                    Ok(a) => answers.push(a),
                    Err(e) => {
                        failures.push(format!("{} ({mode}): {e}", row.id));
                        break;
                    }
                }
            }
            if let Some(s) = server {
                s.abort();
            }
            if answers.len() == case.sends {
                for f in check_ingress(row, &answers, &queue, &cap) {
                    failures.push(format!("{} ({mode}): {f}", row.id));
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

// ---------------------------------------------------------------------------
// Worker rows

fn fixture(name: &str) -> Value {
    let dir = fixtures_dir().expect("checked at the start");
    let text = std::fs::read(dir.join(name)).unwrap();
    serde_json::from_slice(&text).unwrap()
}

fn webhook(name: &str) -> Value {
    fixture(&format!("jira-webhooks/{name}"))
}

fn retarget(mut v: Value, key: &str, id: &str) -> Value {
    v["issue"]["key"] = json!(key);
    v["issue"]["id"] = json!(id);
    v
}

/// What goes on the queue for a worker row.
enum Payload {
    /// A webhook posted through the ingress.
    Webhook(Value),
    /// A message put on the queue as is (not through the ingress).
    Message(String),
    /// A webhook posted through the ingress whose envelope is then edited.
    Envelope(Value, fn(String) -> String),
}

struct WorkerCase {
    /// Applied first (must be applied), for rows that need an existing record.
    seed: Option<Value>,
    payload: Payload,
    edit: fn(String) -> String,
    worker_store_down: bool,
    /// The link store answers every call with an error.
    links_down: bool,
    /// The link store pairs the issue with an incident ServiceNow does not have.
    stale_pair: Option<&'static str>,
    /// Faults pushed on ServiceNow before the row's message runs.
    snow_503: usize,
    receive_count: u32,
    max_receive_count: Option<u32>,
}

const CREATED: &str = "mattermost__jira-issue-created_cloud.json";
const KEY: &str = "KT-22";
const ID: &str = "10509";

fn worker_case(id: &str, jira_base: &str) -> WorkerCase {
    let mut c = WorkerCase {
        seed: None,
        payload: Payload::Webhook(webhook(CREATED)),
        edit: |y| y,
        worker_store_down: false,
        links_down: false,
        stale_pair: None,
        snow_503: 0,
        receive_count: 1,
        max_receive_count: None,
    };
    let created = || webhook(CREATED);
    let with = |f: &dyn Fn(&mut Value)| {
        let mut v = created();
        f(&mut v);
        Payload::Webhook(v)
    };
    let attachment = |url: String| {
        let mut v = retarget(webhook("zulip__attachment-created_cloud.json"), KEY, ID);
        v["attachment"]["content"] = json!(url);
        Payload::Webhook(v)
    };
    match id {
        "w-baseline" => {}
        "w-missing-issue" => {
            c.payload = with(&|v| drop(v.as_object_mut().unwrap().remove("issue")))
        }
        "w-issue-a-string" => c.payload = with(&|v| v["issue"] = json!(KEY)),
        "w-missing-user" => c.payload = with(&|v| drop(v.as_object_mut().unwrap().remove("user"))),
        "w-echo-of-own-change" => {
            c.payload = with(&|v| v["user"] = json!({"accountId": "557058:relay-integration-user"}))
        }
        "w-missing-changelog" | "w-changelog-items-not-a-list" => {
            c.seed = Some(created());
            let mut v = retarget(
                webhook("mattermost__jira-issue-updated-status_cloud.json"),
                KEY,
                ID,
            );
            if id == "w-missing-changelog" {
                v.as_object_mut().unwrap().remove("changelog");
            } else {
                let first = v["changelog"]["items"][0].clone();
                v["changelog"]["items"] = first;
            }
            c.payload = Payload::Webhook(v);
        }
        "w-logger-wrapped-timestamp" => {
            c.payload = Payload::Webhook(webhook("jira-to-matrix__jira-issue-updated-status.json"))
        }
        "w-priority-a-string" => {
            c.payload = with(&|v| v["issue"]["fields"]["priority"] = json!("High"))
        }
        "w-summary-null" => {
            c.payload = with(&|v| {
                v["issue"]["fields"]["summary"] = Value::Null;
                v["issue"]["fields"]["description"] = Value::Null;
            })
        }
        "w-issue-id-a-number" => c.payload = with(&|v| v["issue"]["id"] = json!(10509)),
        "w-comment-body-adf" => {
            c.seed = Some(created());
            let mut v = retarget(webhook("mattermost__comment-created_cloud.json"), KEY, ID);
            v["comment"]["body"] = fixture("adf/jira-cli__md.json");
            c.payload = Payload::Webhook(v);
        }
        "w-comment-without-issue" => {
            c.payload = Payload::Webhook(webhook("mattermost__comment-created_server.json"))
        }
        "w-nested-deep" => {
            let deep: Value = serde_json::from_str(&nested(100)).unwrap();
            c.payload = with(&|v| v["issue"]["fields"]["customfield_99000"] = deep.clone());
        }
        "w-huge-summary" => {
            c.payload = with(&|v| v["issue"]["fields"]["summary"] = json!("s".repeat(200_000)))
        }
        "w-lone-surrogate-in-payload" => {
            // The intake refuses this (row `lone-surrogate-in-payload`); a
            // message from an older intake still carries it to the worker.
            let mut v = created();
            v["issue"]["fields"]["summary"] = json!("@@SURROGATE@@");
            c.payload = Payload::Envelope(v, |e| e.replace("@@SURROGATE@@", "\\ud800"))
        }
        "w-attachment-other-host" => {
            c.seed = Some(created());
            c.payload = Payload::Webhook(retarget(
                webhook("zulip__attachment-created_cloud.json"),
                KEY,
                ID,
            ));
        }
        "w-attachment-userinfo-trick" => {
            c.seed = Some(created());
            let host = jira_base.trim_start_matches("http://");
            c.payload = attachment(format!(
                "http://{host}@evil.example/secure/attachment/1/a.png"
            ));
        }
        "w-attachment-host-prefix-trick" => {
            c.seed = Some(created());
            let host = jira_base.trim_start_matches("http://").replace(':', ".");
            c.payload = attachment(format!(
                "http://{host}.evil.example/secure/attachment/1/a.png"
            ));
        }
        "w-attachment-dot-segments" => {
            c.seed = Some(created());
            c.payload = attachment(format!("{jira_base}/secure/%2e%2e/%2e%2e/etc/passwd"));
        }
        "w-attachment-not-a-url" => {
            c.seed = Some(created());
            c.payload = attachment("not a url at all".into());
        }
        "w-connection-secret-missing" => {
            c.edit = |y| y.replace("relay/servicenow#", "relay/absent#")
        }
        "w-secret-store-down" => c.worker_store_down = true,
        "w-link-store-down" => c.links_down = true,
        "w-stale-pairing" => {
            c.payload = Payload::Webhook(webhook("jira-to-matrix__jira-issue-updated-status.json"));
            c.stale_pair = Some("INDEV-6");
        }
        "w-target-down" => c.snow_503 = 50,
        "w-target-down-last-receive" => {
            c.snow_503 = 50;
            c.receive_count = 3;
            c.max_receive_count = Some(3);
        }
        "w-not-an-envelope" => c.payload = Payload::Message("hello, worker".into()),
        "w-envelope-v2" => {
            c.payload = Payload::Envelope(created(), |e| e.replacen("\"v\":1", "\"v\":2", 1))
        }
        other => panic!("{TABLE}: worker row `{other}` has no case in bad_input.rs"),
    }
    c
}

/// The shipped jira-to-servicenow example aimed at the sandboxes.
struct WorkerRig {
    sn: ServiceNowServer,
    _jira: JiraServer,
    ingress: axum::Router,
    queue: Arc<MemoryQueue>,
    worker: Worker,
    inbox: MemoryInbox,
}

impl WorkerRig {
    async fn start(c: &WorkerCase, sn: ServiceNowServer, jira: JiraServer) -> Self {
        let yaml = std::fs::read_to_string(repo().join("examples/jira-to-servicenow.yaml"))
            .unwrap()
            .replace("https://example.service-now.com", &sn.base_url())
            .replace("https://example.atlassian.net", &jira.base_url());
        let config = Arc::new(
            Config::from_yaml(&(c.edit)(yaml), "jira-to-servicenow.yaml", |_| None)
                .unwrap_or_else(|e| panic!("{e}")),
        );
        let queue = Arc::new(MemoryQueue::new());
        let ingress = app(IngressState {
            config: config.clone(),
            secrets: Arc::new(good_store()),
            queue: queue.clone(),
            clock: Arc::new(SystemClock),
        });
        let worker_secrets: Arc<dyn SecretStore> = if c.worker_store_down {
            Arc::new(DownStore)
        } else {
            Arc::new(good_store())
        };
        let settings = ConnectorSettings {
            call_timeout: Duration::from_secs(5),
            max_attempts: 2,
            max_wait: Duration::from_millis(400),
            ..ConnectorSettings::default()
        };
        let connectors = Connectors::from_config(&config, http_client(), worker_secrets, settings);
        let links = if c.links_down {
            Links::new(Arc::new(DownLinks), LinkSettings::default())
        } else {
            Links::memory()
        };
        if let Some(key) = c.stale_pair {
            let scope = Scope::new("servicenow", "correlation_id", key);
            let gone = Pair {
                id: Some("00000000000000000000000000000000".into()),
                key: Some("INC0099999".into()),
            };
            links.pair(&scope, &gone).await.unwrap();
        }
        let worker = Worker::new(
            config,
            connectors,
            BatchSettings {
                max_receive_count: c.max_receive_count,
                ..BatchSettings::default()
            },
        )
        .with_links(links);
        Self {
            sn,
            _jira: jira,
            ingress,
            queue,
            worker,
            inbox: MemoryInbox::default(),
        }
    }

    /// Posts a webhook body; returns the status.
    async fn post(&self, body: String, delivery: &str) -> u16 {
        let req = Request::post(format!("/webhooks/jira?token={TOKEN}"))
            .header("content-type", "application/json")
            .header("x-atlassian-webhook-identifier", delivery)
            .body(Body::from(body))
            .unwrap();
        self.ingress
            .clone()
            .oneshot(req)
            .await
            .unwrap()
            .status()
            .as_u16()
    }

    /// The queued message `n` (0-based) as the worker receives it.
    fn message(&self, n: usize, receive_count: u32) -> InMessage {
        let (id, m) = self.queue.messages()[n].clone();
        InMessage {
            id,
            group_id: Some(m.group_id),
            dedup_id: Some(m.dedup_id),
            body: m.body,
            receive_count,
            receipt: None,
        }
    }
}

/// Runs a batch in its own task so that a panic is reported as one.
async fn run(rig: &Arc<WorkerRig>, msg: InMessage) -> Result<BatchReport, String> {
    let rig = rig.clone();
    tokio::spawn(async move {
        let budget = Budget::from_now(Duration::from_secs(30));
        rig.worker.run_batch(&rig.inbox, &[msg], &budget).await
    })
    .await
    .map_err(|e| format!("the worker panicked: {e}"))
}

async fn worker_row(row: &Row, cap: &Captured) -> Vec<String> {
    let mut bad = Vec::new();
    let sn = ServiceNowServer::start().await;
    let jira = JiraServer::start().await;
    let case = worker_case(&row.id, &jira.base_url());
    let rig = Arc::new(WorkerRig::start(&case, sn, jira).await);
    let mut n = 0;
    if let Some(seed) = &case.seed {
        assert_eq!(
            rig.post(seed.to_string(), "seed").await,
            202,
            "{}: seed",
            row.id
        );
        let report = run(&rig, rig.message(0, 1)).await.unwrap();
        assert_eq!(
            report.outcomes[0].1, "applied",
            "{}: the seed was not applied",
            row.id
        );
        n = 1;
    }
    let msg = match &case.payload {
        Payload::Webhook(v) => {
            let status = rig.post(v.to_string(), "row").await;
            if status != 202 {
                return vec![format!("the ingress answered {status}, not 202")];
            }
            rig.message(n, case.receive_count)
        }
        Payload::Envelope(v, edit) => {
            assert_eq!(rig.post(v.to_string(), "row").await, 202);
            let mut m = rig.message(n, case.receive_count);
            m.body = edit(m.body);
            m
        }
        Payload::Message(body) => InMessage {
            id: "raw-1".into(),
            group_id: Some("jira:raw".into()),
            dedup_id: Some("raw-1".into()),
            body: body.clone(),
            receive_count: case.receive_count,
            receipt: None,
        },
    };
    if !matches!(case.payload, Payload::Message(_)) && rig.queue.len() != n + 1 {
        bad.push(format!(
            "{} messages queued, expected {}",
            rig.queue.len(),
            n + 1
        ));
    }
    if case.snow_503 > 0 {
        rig.sn.faults().push(
            relay_tests::faults::Match::path("/api/now/"),
            relay_tests::faults::Fault::status(503),
            case.snow_503,
        );
    }
    cap.clear();
    let report = match run(&rig, msg.clone()).await {
        Ok(r) => r,
        Err(e) => return vec![e],
    };
    let Expect::Outcome(expected) = &row.expect else {
        unreachable!()
    };
    let outcome = report.outcomes.first().map(|o| o.1.as_str()).unwrap_or("");
    if outcome != expected {
        bad.push(format!("outcome `{outcome}` (expected `{expected}`)"));
    }
    let (field, value) = row.logged();
    if !cap.has(field, value) {
        let delivery: Vec<Value> = cap
            .lines()
            .into_iter()
            .filter(|l| l["message"] == "processed")
            .collect();
        bad.push(format!(
            "no log line with {field}={value}…; processed: {delivery:?}"
        ));
    }
    let failed = report.failed.contains(&msg.id);
    let dead: Vec<(String, String)> = rig
        .inbox
        .dead
        .lock()
        .unwrap()
        .iter()
        .map(|(m, r)| (m.id.clone(), r.clone()))
        .collect();
    let (_, code) = row.logged();
    match row.fate {
        Fate::Applied | Fate::Filtered | Fate::Skipped => {
            if failed || !dead.is_empty() {
                bad.push(format!("failed {failed}, dead letters {dead:?}"));
            }
        }
        Fate::DeadLetter => {
            let ok = dead.len() == 1 && dead[0].0 == msg.id && dead[0].1.starts_with(code);
            if !ok || failed {
                bad.push(format!(
                    "expected one dead letter `{code}…`, got {dead:?} (failed {failed})"
                ));
            }
        }
        Fate::Redelivered => {
            if !failed || !dead.is_empty() {
                bad.push(format!(
                    "expected a redelivery, got failed {failed}, dead letters {dead:?}"
                ));
            }
        }
        Fate::Parked => {
            let parked = rig.worker.links().all_parked(10).await.unwrap();
            if failed || !dead.is_empty() || parked.len() != 1 {
                bad.push(format!(
                    "expected it parked once, got failed {failed}, dead letters {dead:?}, parked {}",
                    parked.len()
                ));
            }
        }
        Fate::Queued | Fate::Refused => unreachable!(),
    }
    bad
}

/// A link store that cannot be reached.
struct DownLinks;

#[async_trait]
impl LinkBackend for DownLinks {
    async fn get(&self, _: &str, _: &str, _: i64) -> Result<Option<Entry>, LinkError> {
        Err(LinkError::Unavailable("connection refused".into()))
    }
    async fn put(&self, _: &Entry) -> Result<(), LinkError> {
        Err(LinkError::Unavailable("connection refused".into()))
    }
    async fn put_new(&self, _: &Entry, _: i64) -> Result<bool, LinkError> {
        Err(LinkError::Unavailable("connection refused".into()))
    }
    async fn delete(&self, _: &str, _: &str) -> Result<(), LinkError> {
        Err(LinkError::Unavailable("connection refused".into()))
    }
    async fn query(&self, _: &str, _: &str, _: usize, _: i64) -> Result<Vec<Entry>, LinkError> {
        Err(LinkError::Unavailable("connection refused".into()))
    }
}

#[tokio::test]
async fn worker_rows() {
    if fixtures_dir().is_none() {
        return;
    }
    let rows: Vec<Row> = table()
        .into_iter()
        .filter(|r| r.stage == Stage::Worker)
        .collect();
    assert!(rows.len() >= 20, "{} worker rows", rows.len());
    let (cap, _guard) = Captured::start("info");
    let mut failures = Vec::new();
    for row in &rows {
        for f in worker_row(row, &cap).await {
            failures.push(format!("{}: {f}", row.id));
        }
    }
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
