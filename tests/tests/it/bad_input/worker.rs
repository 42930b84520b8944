//! The worker rows: each message posted through the intake, then one
//! `Worker::run_batch` against the sandbox ServiceNow and Jira servers,
//! checked for its outcome, its log line and its fate.

use super::{good_store, nested, table, DownStore, Expect, Fate, Row, Stage, TABLE, TOKEN};
use crate::logcap::Captured;
use async_trait::async_trait;
use relay_tests::jira_server::JiraServer;
use relay_tests::servicenow_server::ServiceNowServer;
use relay_tests::{example_yaml, fixtures_dir, jira_webhook, retarget, status_of};
use serde_json::{json, Value};
use shared::config::Config;
use shared::intake::router::{app, IngressState};
use shared::links::{Entry, LinkBackend, LinkError, LinkSettings, Links, Pair, Scope};
use shared::outbound::executor::Connectors;
use shared::outbound::rest::http_client;
use shared::outbound::{Budget, ConnectorSettings};
use shared::queue::MemoryQueue;
use shared::queue::{InMessage, MemoryInbox};
use shared::secrets::SecretStore;
use shared::support::clock::SystemClock;
use shared::worker::{BatchReport, BatchSettings, Worker};
use std::sync::Arc;
use std::time::Duration;

fn fixture(rel: &str) -> Value {
    relay_tests::fixture_json(rel).expect("checked at the start")
}

fn webhook(name: &str) -> Value {
    relay_tests::jira_fixture(name).expect("checked at the start")
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
        other => panic!("{TABLE}: worker row `{other}` has no case in bad_input/worker.rs"),
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
        let yaml = example_yaml("jira-to-servicenow", &sn.base_url(), &jira.base_url());
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
        let req = jira_webhook(&format!("/webhooks/jira?token={TOKEN}"), body, delivery);
        status_of(&self.ingress, req).await
    }

    /// The queued message `n` (0-based) as the worker receives it.
    fn message(&self, n: usize, receive_count: u32) -> InMessage {
        relay_tests::queued(&self.queue, n, receive_count).remove(0)
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
    // given the table's worker rows and a log capture
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
    // when each row is posted through the intake and run by the worker
    for row in &rows {
        // then its outcome, log line and fate match the row (worker_row)
        for f in worker_row(row, &cap).await {
            failures.push(format!("{}: {f}", row.id));
        }
    }
    // and no row failed
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
