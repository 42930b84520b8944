//! The worker end to end: real Jira fixtures through the ingress router into
//! moto's SQS FIFO queue, then the worker Lambda's own handler
//! (`worker::handle`) on real `SqsEvent`s built from what moto delivers,
//! writing into the ServiceNow and Jira contract servers, with connection
//! secrets in moto's Secrets Manager and dead letters in a moto FIFO DLQ.
//!
//! `Relay::pump` plays the part of Lambda's event source mapping: receive a
//! batch, invoke the handler, delete what succeeded, make the reported
//! failures visible again at once (instead of waiting out the visibility
//! timeout), until the queue is empty.

use axum::response::IntoResponse;
use relay_tests::faults::{Fault, Match};
use relay_tests::jira_server::JiraServer;
use relay_tests::servicenow_server::ServiceNowServer;
use relay_tests::{aws_endpoint, create_fifo_queue, fixtures_dir, sdk_config, unique};
use serde_json::{json, Value};
use shared::config::Config;
use shared::intake::router::{app, IngressState};
use shared::outbound::executor::Connectors;
use shared::outbound::rest::http_client;
use shared::outbound::rest::ConnectorSettings;
use shared::queue::{SqsInbox, SqsQueue};
use shared::secrets::{AwsSecretStore, CachedSecretStore};
use shared::support::clock::SystemClock;
use shared::worker::{BatchSettings, Worker};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tower::ServiceExt;

const WEBHOOK_TOKEN: &str = "wh-token-41d2";
pub(crate) const SN_USER: &str = relay_tests::servicenow_server::DEFAULT_USER;
const SN_PASSWORD: &str = relay_tests::servicenow_server::DEFAULT_PASSWORD;
pub(crate) const JIRA_EMAIL: &str = "relay@example.com";
pub(crate) const JIRA_TOKEN: &str = "jira-api-token";
const SN_CLIENT_ID: &str = relay_tests::servicenow_server::DEFAULT_CLIENT_ID;
const SN_CLIENT_SECRET: &str = relay_tests::servicenow_server::DEFAULT_CLIENT_SECRET;
const JIRA_CLIENT_ID: &str = relay_tests::jira_server::DEFAULT_CLIENT_ID;
const JIRA_CLIENT_SECRET: &str = relay_tests::jira_server::DEFAULT_CLIENT_SECRET;
const HMAC_KEY: &str = "hmac-key-77b0";
const DC_PAT: &str = "dc-pat-5e1f";
const HOOK_TOKEN: &str = "hook-token-c3a9";
const MAX_RECEIVES: u32 = 5;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn fixture(name: &str) -> Option<Value> {
    let dir = fixtures_dir()?;
    let text = std::fs::read(dir.join("jira-webhooks").join(name)).unwrap();
    Some(serde_json::from_slice(&text).unwrap())
}

/// Our own ServiceNow sender events (shared/tests/events).
fn sn_event(name: &str) -> Value {
    let text = std::fs::read(repo().join("shared/tests/events").join(name)).unwrap();
    serde_json::from_slice(&text).unwrap()
}

/// Points a fixture at another issue (the fixtures describe different issues;
/// a story needs one).
fn retarget(mut v: Value, key: &str, id: &str) -> Value {
    v["issue"]["key"] = json!(key);
    v["issue"]["id"] = json!(id);
    v
}

/// What a config edit may need to know.
pub(crate) struct Servers {
    pub(crate) prefix: String,
    pub(crate) sn: String,
    pub(crate) jira: String,
}

/// (method, path, `X-Relay-Source`, JSON body) of one request.
type HookRequest = (String, String, Option<String>, Value);

/// A generic JSON-over-HTTP target: records every request, answers 200.
#[derive(Clone)]
struct HookServer {
    url: String,
    seen: Arc<std::sync::Mutex<Vec<HookRequest>>>,
}

impl HookServer {
    async fn start() -> Self {
        let seen: Arc<std::sync::Mutex<Vec<_>>> = Arc::default();
        let keep = seen.clone();
        let app = axum::Router::new().fallback(move |req: http::Request<axum::body::Body>| {
            let keep = keep.clone();
            async move {
                let (parts, body) = req.into_parts();
                let bytes = axum::body::to_bytes(body, 1 << 20).await.unwrap();
                let auth = parts
                    .headers
                    .get("authorization")
                    .map(|v| v.to_str().unwrap().to_owned());
                let source = parts
                    .headers
                    .get("x-relay-source")
                    .map(|v| v.to_str().unwrap().to_owned());
                if auth.as_deref() != Some(&format!("Bearer {HOOK_TOKEN}")) {
                    return (http::StatusCode::UNAUTHORIZED, "no").into_response();
                }
                keep.lock().unwrap().push((
                    parts.method.to_string(),
                    parts.uri.path().to_owned(),
                    source,
                    serde_json::from_slice(&bytes).unwrap_or(Value::Null),
                ));
                (http::StatusCode::OK, axum::Json(json!({"ok": true}))).into_response()
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self { url, seen }
    }
}

pub(crate) struct Relay {
    pub(crate) sn: ServiceNowServer,
    pub(crate) jira: JiraServer,
    hook: HookServer,
    pub(crate) sqs: aws_sdk_sqs::Client,
    sm: aws_sdk_secretsmanager::Client,
    queue_url: String,
    dlq_url: String,
    ingress: axum::Router,
    pub(crate) worker: Worker,
    inbox: SqsInbox,
    prefix: String,
    /// What the worker was built from (the reconciler tests build theirs too).
    pub(crate) config: Arc<Config>,
    pub(crate) secrets: Arc<dyn shared::secrets::SecretStore>,
    pub(crate) aws: aws_config::SdkConfig,
}

impl Relay {
    /// The shipped example `example` (`jira-to-servicenow`, …) with its base
    /// URLs pointed at the contract servers and its secret ids made unique.
    pub(crate) async fn start(example: &str) -> Option<Self> {
        Self::start_with(example, |y, _| y, ConnectorSettings::default()).await
    }

    /// A config file of the repository (`config/relay.yaml`), `edit`ed.
    pub(crate) async fn start_with_config(
        path: &str,
        edit: impl FnOnce(String, &Servers) -> String,
    ) -> Option<Self> {
        let file = path.to_owned();
        Self::start_from(
            move || std::fs::read_to_string(repo().join(&file)).unwrap(),
            edit,
            ConnectorSettings::default(),
        )
        .await
    }

    /// The same relay with another link store.
    pub(crate) fn with_links(self, links: shared::links::Links) -> Self {
        Self {
            worker: self.worker.with_links(links),
            ..self
        }
    }

    /// Receives and deletes every queued message; returns the bodies (for
    /// tests that hand a message to the worker themselves).
    pub(crate) async fn take_bodies(&self) -> Vec<String> {
        relay_tests::drain(&self.sqs, &self.queue_url)
            .await
            .into_iter()
            .map(|m| m.body)
            .collect()
    }

    /// Creates a record in the ServiceNow contract server over its REST API
    /// (as an agent would); returns it.
    pub(crate) async fn sn_create(&self, table: &str, fields: Value) -> Value {
        let r = reqwest::Client::new()
            .post(format!("{}/api/now/table/{table}", self.sn.base_url()))
            .basic_auth(SN_USER, Some(SN_PASSWORD))
            .json(&fields)
            .send()
            .await
            .unwrap();
        let status = r.status();
        let v: Value = r.json().await.unwrap();
        assert!(status.is_success(), "{status}: {v}");
        v["result"].clone()
    }

    async fn start_with(
        example: &str,
        edit: impl FnOnce(String, &Servers) -> String,
        settings: ConnectorSettings,
    ) -> Option<Self> {
        let file = format!("examples/{example}.yaml");
        Self::start_from(
            move || std::fs::read_to_string(repo().join(&file)).unwrap(),
            edit,
            settings,
        )
        .await
    }

    async fn start_from(
        read: impl FnOnce() -> String,
        edit: impl FnOnce(String, &Servers) -> String,
        settings: ConnectorSettings,
    ) -> Option<Self> {
        let moto = aws_endpoint()?;
        fixtures_dir()?;
        let conf = sdk_config(&moto).await;
        let sqs = aws_sdk_sqs::Client::new(&conf);
        let sm = aws_sdk_secretsmanager::Client::new(&conf);
        let queue_url = create_fifo_queue(&sqs, &unique("worker")).await;
        let dlq_url = create_fifo_queue(&sqs, &unique("worker-dlq")).await;
        let sn = ServiceNowServer::start().await;
        let jira = JiraServer::start().await;
        jira.set_bearer(DC_PAT);
        let hook = HookServer::start().await;
        let prefix = unique("relay");
        for (id, value) in [
            (
                "webhook",
                json!({"token": WEBHOOK_TOKEN, "hmac": "unused-hmac-key"}),
            ),
            (
                "servicenow",
                json!({"username": SN_USER, "password": SN_PASSWORD,
                       "client_id": SN_CLIENT_ID, "client_secret": SN_CLIENT_SECRET}),
            ),
            (
                "jira",
                json!({"email": JIRA_EMAIL, "api_token": JIRA_TOKEN,
                       "client_id": JIRA_CLIENT_ID, "client_secret": JIRA_CLIENT_SECRET}),
            ),
            (
                "servicenow-sender",
                json!({"username": "snow.sender", "password": "sender-pw"}),
            ),
            ("jira-cloud-webhook", json!({"hmac": HMAC_KEY})),
            ("jira-dc", json!({"pat": DC_PAT})),
            ("hook", json!({"token": HOOK_TOKEN})),
        ] {
            sm.create_secret()
                .name(format!("{prefix}/{id}"))
                .secret_string(value.to_string())
                .send()
                .await
                .expect("create secret in moto");
        }
        let yaml = read();
        let yaml = yaml
            .replace("https://example.service-now.com", &sn.base_url())
            .replace("https://example.atlassian.net", &jira.base_url())
            .replace("https://jira.example.com", &jira.base_url())
            .replace(
                "https://hooks.example.com/jira",
                &format!("{}/jira", hook.url),
            )
            .replace("relay/", &format!("{prefix}/"));
        let servers = Servers {
            prefix: prefix.clone(),
            sn: sn.base_url(),
            jira: jira.base_url(),
        };
        let config = Arc::new(
            Config::from_yaml(&edit(yaml, &servers), "relay.yaml", |_| None)
                .unwrap_or_else(|e| panic!("{e}")),
        );
        let secrets = Arc::new(
            CachedSecretStore::new(AwsSecretStore::from_conf(&conf)).min_refetch(Duration::ZERO),
        );
        let ingress = app(IngressState {
            config: config.clone(),
            secrets: secrets.clone(),
            queue: Arc::new(SqsQueue::from_conf(&conf, queue_url.clone())),
            clock: Arc::new(SystemClock),
        });
        // This harness redelivers a failed message at once (visibility 0,
        // see `round`): waiting out a settle time is not possible here, so a
        // write whose answer was lost is looked up and, if absent, sent
        // again right away. The settle wait is tested with `relay serve`.
        let settings = ConnectorSettings {
            settle: settings.settle.or(Some(Duration::ZERO)),
            ..settings
        };
        let connectors = Connectors::from_config(&config, http_client(), secrets.clone(), settings);
        let worker = Worker::new(
            config.clone(),
            connectors,
            BatchSettings {
                max_receive_count: Some(MAX_RECEIVES),
                ..BatchSettings::default()
            },
        );
        let inbox = SqsInbox::from_conf(&conf, queue_url.clone(), dlq_url.clone());
        Some(Self {
            sn,
            jira,
            hook,
            sqs,
            sm,
            queue_url,
            dlq_url,
            ingress,
            worker,
            inbox,
            prefix,
            config,
            secrets,
            aws: conf,
        })
    }

    /// The queue the ingress writes to and the worker reads.
    pub(crate) fn queue_url(&self) -> &str {
        &self.queue_url
    }

    /// Posts a webhook to the ingress; returns the status.
    pub(crate) async fn post(&self, endpoint: &str, payload: &Value, delivery: &str) -> u16 {
        let req = http::Request::post(format!("/webhooks/{endpoint}?token={WEBHOOK_TOKEN}"))
            .header("content-type", "application/json")
            .header("x-atlassian-webhook-identifier", delivery)
            .body(axum::body::Body::from(payload.to_string()))
            .unwrap();
        self.ingress
            .clone()
            .oneshot(req)
            .await
            .unwrap()
            .status()
            .as_u16()
    }

    /// Posts a webhook signed with `X-Hub-Signature` (HMAC endpoints).
    async fn post_signed(&self, endpoint: &str, payload: &Value, delivery: &str) -> u16 {
        let body = payload.to_string();
        let req = http::Request::post(format!("/webhooks/{endpoint}"))
            .header("content-type", "application/json")
            .header("x-atlassian-webhook-identifier", delivery)
            .header(
                "x-hub-signature",
                relay_tests::sign(HMAC_KEY, body.as_bytes()),
            )
            .body(axum::body::Body::from(body))
            .unwrap();
        self.ingress
            .clone()
            .oneshot(req)
            .await
            .unwrap()
            .status()
            .as_u16()
    }

    /// Posts a ServiceNow sender event (Basic auth).
    pub(crate) async fn post_sn(&self, payload: &Value) -> u16 {
        use base64::Engine as _;
        let basic = base64::engine::general_purpose::STANDARD.encode("snow.sender:sender-pw");
        let req = http::Request::post("/webhooks/servicenow")
            .header("content-type", "application/json")
            .header("authorization", format!("Basic {basic}"))
            .body(axum::body::Body::from(payload.to_string()))
            .unwrap();
        self.ingress
            .clone()
            .oneshot(req)
            .await
            .unwrap()
            .status()
            .as_u16()
    }

    /// One receive + invoke round. Returns (records handed to the handler,
    /// ids it reported failed).
    async fn round(&self) -> (Vec<String>, Vec<String>) {
        use aws_sdk_sqs::types::MessageSystemAttributeName as S;
        let out = self
            .sqs
            .receive_message()
            .queue_url(&self.queue_url)
            .max_number_of_messages(10)
            .message_system_attribute_names(S::All)
            .visibility_timeout(30)
            .wait_time_seconds(0)
            .send()
            .await
            .expect("receive from moto");
        let msgs = out.messages.unwrap_or_default();
        if msgs.is_empty() {
            return (Vec::new(), Vec::new());
        }
        // The event exactly as Lambda's SQS event source writes it.
        let records: Vec<Value> = msgs
            .iter()
            .map(|m| {
                let attrs: HashMap<String, String> = m
                    .attributes
                    .clone()
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(k, v)| (k.as_str().to_owned(), v))
                    .collect();
                json!({
                    "messageId": m.message_id,
                    "receiptHandle": m.receipt_handle,
                    "body": m.body,
                    "attributes": attrs,
                    "messageAttributes": {},
                    "md5OfBody": m.md5_of_body,
                    "eventSource": "aws:sqs",
                    "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:worker.fifo",
                    "awsRegion": "us-east-1",
                })
            })
            .collect();
        let event: aws_lambda_events::event::sqs::SqsEvent =
            serde_json::from_value(json!({ "Records": records })).unwrap();
        let mut ctx = lambda_runtime::Context::default();
        ctx.deadline = (std::time::SystemTime::now() + Duration::from_secs(60))
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        let resp = worker::handle(
            &self.worker,
            &self.inbox,
            lambda_runtime::LambdaEvent::new(event, ctx),
        )
        .await;
        let failed: Vec<String> = resp
            .batch_item_failures
            .iter()
            .map(|f| f.item_identifier.clone())
            .collect();
        for m in &msgs {
            let id = m.message_id.clone().unwrap();
            let receipt = m.receipt_handle.clone().unwrap();
            if failed.contains(&id) {
                self.sqs
                    .change_message_visibility()
                    .queue_url(&self.queue_url)
                    .receipt_handle(receipt)
                    .visibility_timeout(0)
                    .send()
                    .await
                    .unwrap();
            } else {
                self.sqs
                    .delete_message()
                    .queue_url(&self.queue_url)
                    .receipt_handle(receipt)
                    .send()
                    .await
                    .unwrap();
            }
        }
        (
            msgs.iter().map(|m| m.message_id.clone().unwrap()).collect(),
            failed,
        )
    }

    /// Rounds until the queue is empty; returns how many rounds had failures.
    pub(crate) async fn pump(&self) -> usize {
        let mut failing_rounds = 0;
        for _ in 0..40 {
            let (seen, failed) = self.round().await;
            if seen.is_empty() {
                return failing_rounds;
            }
            failing_rounds += usize::from(!failed.is_empty());
        }
        panic!("the queue did not drain in 40 rounds");
    }

    /// Dead letters: (reason attribute, body).
    pub(crate) async fn dead_letters(&self) -> Vec<(String, String)> {
        relay_tests::drain(&self.sqs, &self.dlq_url)
            .await
            .into_iter()
            .map(|r| {
                (
                    r.attributes
                        .get("relay-dead-reason")
                        .cloned()
                        .unwrap_or_default(),
                    r.body,
                )
            })
            .collect()
    }

    fn incident(&self, key: &str) -> serde_json::Map<String, Value> {
        self.sn
            .find("incident", "correlation_id", key)
            .unwrap_or_else(|| panic!("no incident with correlation_id {key}"))
    }

    fn incidents(&self) -> usize {
        self.sn.records("incident").len()
    }

    async fn rotate_servicenow_password(&self, password: &str) {
        self.sn.set_basic(SN_USER, password);
        self.sm
            .put_secret_value()
            .secret_id(format!("{}/servicenow", self.prefix))
            .secret_string(json!({"username": SN_USER, "password": password}).to_string())
            .send()
            .await
            .unwrap();
    }
}

fn text(v: &Value) -> &str {
    v.as_str().unwrap_or_default()
}

#[tokio::test]
async fn jira_story_becomes_one_incident_with_state_comment_and_attachment() {
    let Some(r) = Relay::start("jira-to-servicenow").await else {
        return;
    };
    let created = fixture("mattermost__jira-issue-created_cloud.json").unwrap();
    let (key, id) = ("KT-22", "10509");
    let status = retarget(
        fixture("mattermost__jira-issue-updated-status_cloud.json").unwrap(),
        key,
        id,
    );
    let comment = retarget(
        fixture("mattermost__comment-created_cloud.json").unwrap(),
        key,
        id,
    );
    let url = r.jira.add_file(
        "screenshot.png",
        "image/png",
        b"\x89PNG fake image bytes".to_vec(),
    );
    let mut attachment = retarget(
        fixture("zulip__attachment-created_cloud.json").unwrap(),
        key,
        id,
    );
    attachment["attachment"]["content"] = json!(url);

    for (i, p) in [&created, &status, &comment, &attachment]
        .iter()
        .enumerate()
    {
        assert_eq!(r.post("jira", p, &format!("story-{i}")).await, 202);
    }
    assert_eq!(r.pump().await, 0, "nothing should fail");

    assert_eq!(r.incidents(), 1);
    let inc = r.incident(key);
    assert_eq!(text(&inc["correlation_display"]), "jira-relay");
    assert!(
        text(&inc["short_description"]).starts_with("[KT-22] "),
        "{inc:?}"
    );
    // Done in Jira: the status rule sets 6 and the resolution rule closes it out.
    assert_eq!(text(&inc["state"]), "6");
    assert_eq!(text(&inc["close_code"]), "Solved (Permanently)");
    // Every value comes back a string, like ServiceNow's.
    assert!(inc.values().all(|v| v.is_string() || v.is_object()));
    let sys_id = text(&inc["sys_id"]).to_owned();
    let journal = r.sn.journal("incident", &sys_id);
    assert_eq!(journal.len(), 1, "{journal:?}");
    assert_eq!(journal[0].field, "comments");
    assert!(journal[0].value.contains("(Jira): "), "{journal:?}");
    let files = r.sn.attachments();
    assert_eq!(files.len(), 1);
    assert_eq!(files[0].table_sys_id, sys_id);
    assert_eq!(files[0].file_name, "screenshot.png");
    assert_eq!(files[0].content_type, "image/png");
    assert_eq!(files[0].bytes, b"\x89PNG fake image bytes");
    assert!(r.dead_letters().await.is_empty());
}

#[tokio::test]
async fn a_delivery_seen_twice_creates_one_record() {
    let Some(r) = Relay::start("jira-to-servicenow").await else {
        return;
    };
    let created = fixture("relay-jira__jira-issue-created_cloud.json").unwrap();
    // Jira's retry within the dedup window: SQS drops it.
    assert_eq!(r.post("jira", &created, "dup-1").await, 202);
    assert_eq!(r.post("jira", &created, "dup-1").await, 202);
    r.pump().await;
    // A late retry after the window (a new dedup id, the same change): the
    // lookup by correlation_id finds the incident, nothing is created.
    assert_eq!(r.post("jira", &created, "dup-1-late").await, 202);
    r.pump().await;
    assert_eq!(r.incidents(), 1);
    let posts =
        r.sn.requests()
            .iter()
            .filter(|q| q.method == "POST" && q.path == "/api/now/table/incident")
            .count();
    assert_eq!(posts, 1);
}

#[tokio::test]
async fn a_comment_waits_for_its_create_to_succeed() {
    let Some(r) = Relay::start("jira-to-servicenow").await else {
        return;
    };
    let created = fixture("mattermost__jira-issue-created_cloud.json").unwrap();
    let comment = retarget(
        fixture("mattermost__comment-created_cloud.json").unwrap(),
        "KT-22",
        "10509",
    );
    // More 503s than the in-process attempts: the create goes back to the queue twice.
    r.sn.faults().push(
        Match::method_path(http::Method::POST, "/api/now/table/incident"),
        Fault::status(503),
        8,
    );
    assert_eq!(r.post("jira", &created, "c-1").await, 202);
    assert_eq!(r.post("jira", &comment, "c-2").await, 202);
    let failing = r.pump().await;
    assert!(
        failing >= 2,
        "the create should have been handed back: {failing}"
    );
    let inc = r.incident("KT-22");
    let journal = r.sn.journal("incident", text(&inc["sys_id"]));
    assert_eq!(journal.len(), 1);
    // The comment's PATCH comes after the create's POST that succeeded.
    let reqs = r.sn.requests();
    let created_at = reqs
        .iter()
        .rposition(|q| q.method == "POST" && q.path == "/api/now/table/incident")
        .unwrap();
    let commented_at = reqs.iter().position(|q| q.method == "PATCH").unwrap();
    assert!(created_at < commented_at);
    assert!(r.dead_letters().await.is_empty());
}

#[tokio::test]
async fn rate_limits_and_outages_are_retried_and_applied() {
    let settings = ConnectorSettings {
        call_timeout: Duration::from_secs(1),
        ..ConnectorSettings::default()
    };
    let Some(r) = Relay::start_with("jira-to-servicenow", |y, _| y, settings).await else {
        return;
    };
    let f = r.sn.faults();
    f.push(
        Match::path("/api/now/table/incident"),
        Fault::rate_limited(1),
        1,
    );
    f.push(
        Match::path("/api/now/table/incident"),
        Fault::status(502),
        1,
    );
    f.push(
        Match::path("/api/now/table/incident"),
        Fault::Timeout(Duration::from_secs(3)),
        1,
    );
    let created = fixture("relay-jira__jira-issue-created_cloud.json").unwrap();
    assert_eq!(r.post("jira", &created, "rl-1").await, 202);
    r.pump().await;
    assert_eq!(r.incidents(), 1);
    assert_eq!(f.injected().len(), 3);
    assert!(r.dead_letters().await.is_empty());
}

#[tokio::test]
async fn a_rotated_password_is_reread_after_a_401() {
    let Some(r) = Relay::start("jira-to-servicenow").await else {
        return;
    };
    let created = fixture("relay-jira__jira-issue-created_cloud.json").unwrap();
    assert_eq!(r.post("jira", &created, "rot-1").await, 202);
    r.pump().await;
    // Rotation: ServiceNow and the secret change; the worker's cached copy is stale.
    r.rotate_servicenow_password("snow-password-2").await;
    let status = retarget(
        fixture("mattermost__jira-issue-updated-status_cloud.json").unwrap(),
        "REL-23",
        "10022",
    );
    assert_eq!(r.post("jira", &status, "rot-2").await, 202);
    assert_eq!(r.pump().await, 0);
    assert_eq!(text(&r.incident("REL-23")["state"]), "6");
}

#[tokio::test]
async fn permanent_failures_go_to_the_dlq_with_their_reason_after_one_receive() {
    let Some(r) = Relay::start("jira-to-servicenow").await else {
        return;
    };
    r.sn.faults().push(
        Match::method_path(http::Method::POST, "/api/now/table/incident"),
        Fault::Status {
            status: 400,
            retry_after: None,
            headers: Vec::new(),
            body: Some(
                json!({"error": {"message": "Mandatory field missing", "detail": "caller_id"}, "status": "failure"})
                    .to_string(),
            ),
        },
        1,
    );
    let created = fixture("relay-jira__jira-issue-created_cloud.json").unwrap();
    assert_eq!(r.post("jira", &created, "dead-1").await, 202);
    assert_eq!(r.pump().await, 0, "a dead letter is not a batch failure");
    let dead = r.dead_letters().await;
    assert_eq!(dead.len(), 1);
    assert!(
        dead[0]
            .0
            .starts_with("target_rejected: 400 from servicenow")
            && dead[0].0.contains("Mandatory field missing: caller_id"),
        "{dead:?}"
    );
    // The body is the original envelope, ready for a redrive.
    assert!(shared::intake::envelope::Envelope::decode(&dead[0].1).is_ok());
    assert_eq!(r.incidents(), 0);
}

#[tokio::test]
async fn an_update_for_an_unknown_record_waits_then_dead_letters_with_the_reason() {
    let Some(r) = Relay::start("jira-to-servicenow").await else {
        return;
    };
    // No incident for INDEV-6: the update is parked in the link store (its
    // queue group moves on at once), and dead-lettered `never_correlated`
    // when no record appeared within the park time.
    let t0: jiff::Timestamp = "2026-12-04T10:00:00Z".parse().unwrap();
    let clock = Arc::new(shared::support::clock::FixedClock::new(t0));
    let links = shared::links::Links::memory().with_clock(clock.clone());
    let r = Relay {
        worker: r.worker.with_links(links),
        ..r
    };
    let status = fixture("jira-to-matrix__jira-issue-updated-status.json").unwrap();
    assert_eq!(r.post("jira", &status, "wait-1").await, 202);
    assert_eq!(r.pump().await, 0, "parked, not retried");
    assert!(r.dead_letters().await.is_empty());
    assert_eq!(r.worker.links().all_parked(10).await.unwrap().len(), 1);
    let budget = shared::outbound::Budget::from_now(Duration::from_secs(30));
    // Within the park time nothing happens.
    clock.set(t0 + jiff::SignedDuration::from_hours(23));
    assert_eq!(r.worker.replay_parked(&r.inbox, &budget).await, (0, 0));
    clock.set(t0 + jiff::SignedDuration::from_hours(25));
    assert_eq!(r.worker.replay_parked(&r.inbox, &budget).await, (0, 1));
    let dead = r.dead_letters().await;
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert!(dead[0].0.starts_with("never_correlated: "), "{dead:?}");
    assert!(shared::intake::envelope::Envelope::decode(&dead[0].1).is_ok());
    assert!(r.worker.links().all_parked(10).await.unwrap().is_empty());
}

#[tokio::test]
async fn attachments_from_other_hosts_and_oversized_files_are_dead() {
    let Some(r) = Relay::start_with(
        "jira-to-servicenow",
        |y, _| y,
        ConnectorSettings {
            max_attachment_bytes: 1024,
            ..ConnectorSettings::default()
        },
    )
    .await
    else {
        return;
    };
    let created = fixture("zulip__attachment-created_cloud.json").unwrap();
    let issue = json!({"webhookEvent": "jira:issue_created", "issue_event_type_name": "issue_created",
        "user": {"accountId": "5c76b994e1bcdf6294d0eb0f"},
        "issue": {"id": "10000", "key": "BUG-15", "fields": {"summary": "New bug with hook", "priority": {"name": "High"}}}});
    assert_eq!(r.post("jira", &issue, "att-0").await, 202);
    // The fixture's own URL is on another site.
    assert_eq!(r.post("jira", &created, "att-1").await, 202);
    let mut big = created.clone();
    // Another attachment (its own id: the same id is the same change, deduplicated).
    big["attachment"]["id"] = json!("10001");
    big["attachment"]["content"] =
        json!(r
            .jira
            .add_file("big.bin", "application/octet-stream", vec![7u8; 4096]));
    assert_eq!(r.post("jira", &big, "att-2").await, 202);
    r.pump().await;
    let dead = r.dead_letters().await;
    let reasons: Vec<&str> = dead.iter().map(|(r, _)| r.as_str()).collect();
    assert_eq!(reasons.len(), 2, "{reasons:?}");
    assert!(
        reasons[0].starts_with("attachment_url_not_allowed: "),
        "{reasons:?}"
    );
    assert!(
        reasons[1].starts_with("attachment_too_large: "),
        "{reasons:?}"
    );
    assert!(r.sn.attachments().is_empty());
}

#[tokio::test]
async fn a_failed_message_holds_back_the_rest_of_its_group_only() {
    let Some(r) = Relay::start("jira-to-servicenow").await else {
        return;
    };
    let a = fixture("mattermost__jira-issue-created_cloud.json").unwrap();
    let comment = retarget(
        fixture("mattermost__comment-created_cloud.json").unwrap(),
        "KT-22",
        "10509",
    );
    let mut second = comment.clone();
    second["comment"]["id"] = json!("99001");
    second["comment"]["body"] = json!("second comment");
    let b = fixture("relay-jira__jira-issue-created_cloud.json").unwrap();
    for (i, p) in [&a, &comment, &second, &b].iter().enumerate() {
        assert_eq!(r.post("jira", p, &format!("grp-{i}")).await, 202);
    }
    // Only KT-22's group writes comments (PATCH): its first comment fails
    // every in-process attempt.
    r.sn.faults().push(
        Match::method_path(http::Method::PATCH, "/api/now/table/incident/"),
        Fault::status(503),
        4,
    );
    let (seen, failed) = r.round().await;
    assert_eq!(seen.len(), 4, "one batch with both groups");
    // The failed comment and the one after it; REL-23 and KT-22's create went through.
    assert_eq!(failed.len(), 2, "{failed:?}");
    assert!(r.sn.find("incident", "correlation_id", "REL-23").is_some());
    let kt = r.incident("KT-22");
    assert!(r.sn.journal("incident", text(&kt["sys_id"])).is_empty());
    assert_eq!(r.pump().await, 0);
    let journal = r.sn.journal("incident", text(&kt["sys_id"]));
    assert_eq!(journal.len(), 2);
    assert!(journal[1].value.ends_with("second comment"), "{journal:?}");
    assert_eq!(r.incidents(), 2);
}

#[tokio::test]
async fn servicenow_incidents_become_jira_issues_with_adf_comments_and_transitions() {
    let Some(r) = Relay::start("servicenow-to-jira").await else {
        return;
    };
    let created = sn_event("servicenow-incident-created.json");
    let commented = sn_event("servicenow-incident-commented.json");
    let resolved = sn_event("servicenow-incident-resolved.json");
    for p in [&created, &commented, &resolved] {
        assert_eq!(r.post_sn(p).await, 202);
    }
    assert_eq!(r.pump().await, 0);
    assert!(r.dead_letters().await.is_empty());
    let violations = r.jira.violations();
    assert!(violations.is_empty(), "{violations:?}");
    let issues = r.jira.issues();
    assert_eq!(issues.len(), 1);
    let issue = &issues[0];
    assert_eq!(issue.fields["customfield_10050"], "INC0010019");
    assert_eq!(issue.fields["summary"], "Email server is down");
    assert_eq!(issue.fields["description"]["type"], "doc");
    assert_eq!(issue.status, "Resolved");
    assert_eq!(issue.fields["resolution"]["name"], "Done");
    assert_eq!(issue.comments.len(), 1);
    assert_eq!(issue.comments[0]["body"]["type"], "doc");
    assert_eq!(
        issue.properties["jira-relay"],
        json!({"key": "INC0010019", "sys_id": "9d385017c611228701d22104cc95c371"})
    );
    assert_eq!(issue.remote_links.len(), 1);
    assert_eq!(
        issue.remote_links[0]["object"]["title"],
        "ServiceNow INC0010019"
    );
}

/// Replaces the `auth:` block of connection `name` with `auth`.
pub(crate) fn set_auth(yaml: &str, name: &str, auth: &str) -> String {
    let start = yaml
        .find(&format!("- name: {name}\n"))
        .unwrap_or_else(|| panic!("no connection {name}"));
    let auth_at = start + yaml[start..].find("    auth:\n").unwrap();
    let end = yaml[auth_at + 10..]
        .find("\n\n")
        .map_or(yaml.len(), |e| auth_at + 10 + e);
    format!("{}{auth}{}", &yaml[..auth_at], &yaml[end..])
}

#[tokio::test]
async fn servicenow_oauth_tokens_are_cached_and_renewed_after_a_401() {
    let Some(r) = Relay::start_with(
        "jira-to-servicenow",
        |y, s| {
            set_auth(
                &y,
                "servicenow",
                &format!(
                    "    auth:\n      kind: oauth2\n      client_id: {p}/servicenow#client_id\n      client_secret: {p}/servicenow#client_secret\n      token_url: {sn}/oauth_token.do",
                    p = s.prefix,
                    sn = s.sn
                ),
            )
        },
        ConnectorSettings::default(),
    )
    .await
    else {
        return;
    };
    let (key, id) = ("KT-22", "10509");
    let created = fixture("mattermost__jira-issue-created_cloud.json").unwrap();
    let comment = retarget(
        fixture("mattermost__comment-created_cloud.json").unwrap(),
        key,
        id,
    );
    assert_eq!(r.post("jira", &created, "o-1").await, 202);
    assert_eq!(r.post("jira", &comment, "o-2").await, 202);
    assert_eq!(r.pump().await, 0);
    assert_eq!(r.sn.oauth_tokens_issued(), 1, "one token for every call");
    // The token is revoked early: the 401 brings a new one, the event still applies.
    r.sn.expire_tokens();
    let status = retarget(
        fixture("mattermost__jira-issue-updated-status_cloud.json").unwrap(),
        key,
        id,
    );
    assert_eq!(r.post("jira", &status, "o-3").await, 202);
    assert_eq!(r.pump().await, 0);
    assert_eq!(r.sn.oauth_tokens_issued(), 2);
    assert_eq!(text(&r.incident(key)["state"]), "6");
    assert!(r
        .sn
        .requests()
        .iter()
        .filter(|q| q.path != "/oauth_token.do")
        .all(|q| q.header("authorization") == Some("<redacted>")));
}

#[tokio::test]
async fn jira_oauth_client_credentials() {
    let Some(r) = Relay::start_with(
        "servicenow-to-jira",
        |y, s| {
            set_auth(
                &y,
                "jira",
                &format!(
                    "    auth:\n      kind: oauth2\n      client_id: {p}/jira#client_id\n      client_secret: {p}/jira#client_secret\n      token_url: {j}/oauth/token",
                    p = s.prefix,
                    j = s.jira
                ),
            )
        },
        ConnectorSettings::default(),
    )
    .await
    else {
        return;
    };
    for name in [
        "servicenow-incident-created.json",
        "servicenow-incident-commented.json",
    ] {
        assert_eq!(r.post_sn(&sn_event(name)).await, 202);
    }
    assert_eq!(r.pump().await, 0);
    assert_eq!(r.jira.oauth_tokens_issued(), 1);
    assert_eq!(r.jira.issues()[0].comments.len(), 1);
}

#[tokio::test]
async fn jira_cloud_to_jira_dc_over_v2_with_a_pat() {
    let Some(r) = Relay::start("jira-to-jira").await else {
        return;
    };
    let created = fixture("mattermost__jira-issue-created_cloud.json").unwrap();
    assert_eq!(r.post_signed("jira-cloud", &created, "j2j-1").await, 202);
    // A second delivery of the same change after the dedup window: the
    // upsert finds the copy by its label and updates it.
    assert_eq!(
        r.post_signed("jira-cloud", &created, "j2j-1-late").await,
        202
    );
    assert_eq!(r.pump().await, 0);
    let violations = r.jira.violations();
    assert!(violations.is_empty(), "{violations:?}");
    assert!(r.dead_letters().await.is_empty());
    let issues = r.jira.issues();
    assert_eq!(issues.len(), 1, "{issues:?}");
    assert_eq!(issues[0].key.split('-').next(), Some("OPS"));
    assert_eq!(issues[0].fields["labels"], json!(["src-KT-22"]));
    assert!(r
        .jira
        .requests()
        .iter()
        .filter(|q| q.method != "GET")
        .all(|q| q.path.starts_with("/rest/api/2/")));
}

#[tokio::test]
async fn attachments_are_copied_to_jira_as_multipart() {
    let Some(r) = Relay::start("jira-to-jira").await else {
        return;
    };
    let created = fixture("mattermost__jira-issue-created_cloud.json").unwrap();
    let url = r
        .jira
        .add_file("trace.log", "text/plain", b"line 1\nline 2\n".to_vec());
    let mut attachment = retarget(
        fixture("zulip__attachment-created_cloud.json").unwrap(),
        "KT-22",
        "10509",
    );
    attachment["attachment"]["content"] = json!(url);
    attachment["attachment"]["filename"] = json!("trace.log");
    attachment["attachment"]["mimeType"] = json!("text/plain");
    // The example's whitelist admits listed projects only; this fixture's
    // issue carries no project, so it would be filtered (as it should).
    attachment["issue"]["fields"]["project"] = json!({"key": "KT"});
    assert_eq!(r.post_signed("jira-cloud", &created, "ja-1").await, 202);
    assert_eq!(r.post_signed("jira-cloud", &attachment, "ja-2").await, 202);
    assert_eq!(r.pump().await, 0);
    assert!(r.dead_letters().await.is_empty());
    let violations = r.jira.violations();
    assert!(violations.is_empty(), "{violations:?}");
    let copy = r
        .jira
        .issues()
        .into_iter()
        .find(|i| i.key.starts_with("OPS-"))
        .unwrap();
    assert_eq!(copy.attachments.len(), 1);
    assert_eq!(copy.attachments[0].filename, "trace.log");
    assert_eq!(copy.attachments[0].mime, "text/plain");
    assert_eq!(copy.attachments[0].bytes, b"line 1\nline 2\n");
    let upload = r
        .jira
        .requests()
        .into_iter()
        .find(|q| q.path.ends_with("/attachments"))
        .unwrap();
    assert_eq!(upload.header("x-atlassian-token"), Some("no-check"));
    assert!(upload
        .header("content-type")
        .unwrap()
        .starts_with("multipart/form-data; boundary="));
}

#[tokio::test]
async fn jira_events_to_a_generic_http_api() {
    let Some(r) = Relay::start("jira-to-http").await else {
        return;
    };
    let created = fixture("mattermost__jira-issue-created_cloud.json").unwrap();
    let deleted = fixture("mattermost__jira-issue-deleted_cloud.json").unwrap();
    assert_eq!(r.post("jira", &created, "h-1").await, 202);
    assert_eq!(r.post("jira", &deleted, "h-2").await, 202);
    assert_eq!(r.pump().await, 0);
    let seen = r.hook.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 2, "{seen:?}");
    let post = seen.iter().find(|s| s.0 == "POST").unwrap();
    assert_eq!(post.1, "/jira/events/KT-22");
    assert_eq!(post.2.as_deref(), Some("jira"));
    assert_eq!(post.3["key"], "KT-22");
    assert_eq!(post.3["event"], "jira:issue_created");
    let delete = seen.iter().find(|s| s.0 == "DELETE").unwrap();
    assert_eq!(delete.1, "/jira/events/IDT-19");
}

/// Receives what is visible as worker messages (without invoking anything).
async fn receive(r: &Relay) -> Vec<shared::queue::port::InMessage> {
    use aws_sdk_sqs::types::MessageSystemAttributeName as S;
    let out = r
        .sqs
        .receive_message()
        .queue_url(&r.queue_url)
        .max_number_of_messages(10)
        .message_system_attribute_names(S::All)
        .send()
        .await
        .unwrap();
    out.messages
        .unwrap_or_default()
        .into_iter()
        .map(|m| {
            let attrs = m.attributes.unwrap_or_default();
            shared::queue::port::InMessage {
                id: m.message_id.unwrap(),
                group_id: attrs.get(&S::MessageGroupId).cloned(),
                dedup_id: attrs.get(&S::MessageDeduplicationId).cloned(),
                body: m.body.unwrap(),
                receive_count: 1,
                receipt: m.receipt_handle,
            }
        })
        .collect()
}

#[tokio::test]
async fn no_message_or_call_outlives_the_invocation_deadline() {
    let Some(r) = Relay::start("jira-to-servicenow").await else {
        return;
    };
    let inbox = shared::queue::memory::MemoryInbox::default();
    let created = fixture("relay-jira__jira-issue-created_cloud.json").unwrap();
    assert_eq!(r.post("jira", &created, "dl-1").await, 202);
    let msgs = receive(&r).await;
    assert_eq!(msgs.len(), 1);

    // Less than `min_message_time` left: the message is not started.
    let budget = shared::outbound::Budget::from_now(Duration::from_millis(1500));
    let report = r.worker.run_batch(&inbox, &msgs, &budget).await;
    assert_eq!(report.failed, vec![msgs[0].id.clone()]);
    assert_eq!(report.outcomes[0].1, "deadline");
    assert!(r.sn.requests().is_empty(), "no call was made");

    // Enough to start, but the target hangs: the call is cut at the deadline
    // and the message handed back, well before the hung call would end.
    r.sn.faults().push(
        Match::path("/api/now/table/incident"),
        Fault::Timeout(Duration::from_secs(20)),
        1,
    );
    let started = std::time::Instant::now();
    let budget = shared::outbound::Budget::from_now(Duration::from_millis(3000));
    let report = r.worker.run_batch(&inbox, &msgs, &budget).await;
    let took = started.elapsed();
    assert_eq!(report.outcomes[0].1, "retry");
    assert!(took < Duration::from_millis(3500), "{took:?}");
    assert_eq!(r.incidents(), 0);
    assert!(inbox.dead.lock().unwrap().is_empty());
}

#[tokio::test]
async fn a_dead_letter_queue_outage_loses_nothing() {
    // A mapping that cannot work for this event: a required field it lacks.
    let Some(r) = Relay::start_with(
        "jira-to-servicenow",
        |y, _| {
            y.replacen(
                "caller_id: { value: jira.integration }",
                "caller_id: { path: issue.fields.customfield_99999, required: true }",
                1,
            )
        },
        ConnectorSettings::default(),
    )
    .await
    else {
        return;
    };
    let inbox = shared::queue::memory::MemoryInbox::default();
    inbox
        .fail_dead_letters
        .store(true, std::sync::atomic::Ordering::Relaxed);
    let created = fixture("relay-jira__jira-issue-created_cloud.json").unwrap();
    assert_eq!(r.post("jira", &created, "dlq-down").await, 202);
    let msgs = receive(&r).await;
    let budget = shared::outbound::Budget::from_now(Duration::from_secs(30));
    let report = r.worker.run_batch(&inbox, &msgs, &budget).await;
    // Dead, but the DLQ refused it: reported failed so the queue keeps it.
    assert_eq!(report.outcomes[0].1, "dead");
    assert_eq!(report.failed, vec![msgs[0].id.clone()]);
    // With the DLQ back it lands there, with its reason.
    inbox
        .fail_dead_letters
        .store(false, std::sync::atomic::Ordering::Relaxed);
    let report = r.worker.run_batch(&inbox, &msgs, &budget).await;
    assert!(report.failed.is_empty());
    let dead = inbox.dead.lock().unwrap();
    assert_eq!(dead.len(), 1);
    assert!(
        dead[0]
            .1
            .starts_with("mapping_error: rule `create incident`: required field `caller_id`"),
        "{dead:?}"
    );
    assert!(r.sn.requests().is_empty(), "nothing was applied");
}

#[tokio::test]
async fn comment_edits_and_deletions_follow_their_twin_into_a_jira_target() {
    let Some(r) = Relay::start("jira-to-jira").await else {
        return;
    };
    let created = fixture("mattermost__jira-issue-created_cloud.json").unwrap();
    let mut comment = retarget(
        fixture("mattermost__comment-created_cloud.json").unwrap(),
        "KT-22",
        "10509",
    );
    comment["issue"]["fields"]["project"] = json!({"key": "KT"});
    comment["comment"]["id"] = json!("70001");
    comment["comment"]["body"] = json!("first words");
    assert_eq!(r.post_signed("jira-cloud", &created, "tw-1").await, 202);
    assert_eq!(r.post_signed("jira-cloud", &comment, "tw-2").await, 202);
    assert_eq!(r.pump().await, 0);
    assert!(r.dead_letters().await.is_empty());
    let copy = |r: &Relay| {
        r.jira
            .issues()
            .into_iter()
            .find(|i| i.key.starts_with("OPS-"))
            .unwrap()
    };
    let key = copy(&r).key;
    let comments = r.jira.comments(&key).unwrap();
    assert_eq!(comments.len(), 1);
    assert!(comments[0].body.to_string().contains("first words"));

    // Edited in the source: the twin (known to the link store) is edited.
    let mut edited = comment.clone();
    edited["webhookEvent"] = json!("comment_updated");
    edited["comment"]["body"] = json!("second thoughts");
    assert_eq!(r.post_signed("jira-cloud", &edited, "tw-3").await, 202);
    assert_eq!(r.pump().await, 0);
    let comments = r.jira.comments(&key).unwrap();
    assert_eq!(comments.len(), 1, "edited, not added: {comments:?}");
    assert!(comments[0].body.to_string().contains("second thoughts"));

    // Deleted in the source, with the link store lost meanwhile: the twin is
    // found by the `jira-relay` property it was created with, and deleted.
    let r = r.with_links(shared::links::Links::memory());
    let mut deleted = comment.clone();
    deleted["webhookEvent"] = json!("comment_deleted");
    assert_eq!(r.post_signed("jira-cloud", &deleted, "tw-4").await, 202);
    // A redelivery of the deletion is harmless.
    assert_eq!(r.post_signed("jira-cloud", &deleted, "tw-5").await, 202);
    assert_eq!(r.pump().await, 0);
    assert!(r.dead_letters().await.is_empty());
    assert!(r.jira.comments(&key).unwrap().is_empty());
    let violations = r.jira.violations();
    assert!(violations.is_empty(), "{violations:?}");
}

#[tokio::test]
async fn attachment_redirects_are_followed_only_within_the_allowed_hosts() {
    let Some(r) = Relay::start("jira-to-servicenow").await else {
        return;
    };
    let issue = json!({"webhookEvent": "jira:issue_created", "issue_event_type_name": "issue_created",
        "user": {"accountId": "5c76b994e1bcdf6294d0eb0f"},
        "issue": {"id": "10000", "key": "BUG-15", "fields": {"summary": "Redirects", "priority": {"name": "High"}}}});
    assert_eq!(r.post("jira", &issue, "rd-0").await, 202);
    assert_eq!(r.pump().await, 0);
    let attachment = |id: &str, name: &str, url: &str| {
        let mut a = fixture("zulip__attachment-created_cloud.json").unwrap();
        a["attachment"]["id"] = json!(id);
        a["attachment"]["filename"] = json!(name);
        a["attachment"]["content"] = json!(url);
        a["attachment"]["size"] = json!(6);
        a
    };
    // A redirect that stays under the Jira base URL is followed.
    let url = r.jira.add_file("ok.txt", "text/plain", b"fine!\n".to_vec());
    r.jira.set_content_redirect(Some(format!(
        "{}/rest/api/3/attachment/content/{{id}}?redirect=false",
        r.jira.base_url()
    )));
    assert_eq!(
        r.post("jira", &attachment("20001", "ok.txt", &url), "rd-1")
            .await,
        202
    );
    assert_eq!(r.pump().await, 0);
    assert!(r.dead_letters().await.is_empty());
    assert_eq!(r.sn.attachments().len(), 1);
    // A redirect to another host (here another port on loopback: another
    // origin) is not followed: the credentials and the request stay home.
    let url = r
        .jira
        .add_file("evil.txt", "text/plain", b"nope!\n".to_vec());
    r.jira
        .set_content_redirect(Some(format!("{}/steal/{{id}}", r.hook.url)));
    assert_eq!(
        r.post("jira", &attachment("20002", "evil.txt", &url), "rd-2")
            .await,
        202
    );
    r.pump().await;
    let dead = r.dead_letters().await;
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert!(
        dead[0]
            .0
            .starts_with("attachment_redirect_not_allowed: 302"),
        "{dead:?}"
    );
    assert!(
        r.hook.seen.lock().unwrap().is_empty(),
        "the other host got nothing"
    );
    assert_eq!(r.sn.attachments().len(), 1);
}
