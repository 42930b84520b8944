//! The worker end to end: real Jira fixtures through the ingress router into
//! moto's SQS FIFO queue, then the worker Lambda's own handler
//! (`worker::handle`) on real `SqsEvent`s built from what moto delivers,
//! writing into the ServiceNow and Jira contract servers, with connection
//! secrets in moto's Secrets Manager and dead letters in a moto FIFO DLQ.
//!
//! `Relay::pump` plays the part of Lambda's event source mapping: receive a
//! batch, invoke the handler, delete what succeeded, make the reported
//! failures visible again at once (instead of waiting out the visibility
//! timeout), until the queue is empty (`relay_tests::event_source`).
//!
//! This file is the harness (`Relay`); the tests are grouped by what they
//! exercise: `stories` (one per shipped example), `ordering`, `failures`,
//! `auth`, `attachments`.

mod attachments;
mod auth;
mod failures;
mod ordering;
mod stories;

use axum::response::IntoResponse;
use relay_tests::faults::{Fault, Match};
use relay_tests::jira_fixture as fixture;
use relay_tests::jira_server::JiraServer;
use relay_tests::servicenow_server::ServiceNowServer;
use relay_tests::{
    aws_endpoint, create_fifo_queue, fixtures_dir, retarget, sdk_config, set_auth, text, unique,
};
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
use std::sync::Arc;
use std::time::Duration;

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
/// The organization admin API's key (Jira Cloud deactivation).
pub(crate) const ORG_API_KEY: &str = "org-api-key-41c9";
pub(crate) const DC_PAT: &str = "dc-pat-5e1f";
const HOOK_TOKEN: &str = "hook-token-c3a9";
const MAX_RECEIVES: u32 = 5;

/// Our own ServiceNow sender events (shared/tests/events).
fn sn_event(name: &str) -> Value {
    let text = std::fs::read(relay_tests::repo_path("shared/tests/events").join(name)).unwrap();
    serde_json::from_slice(&text).unwrap()
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
            move || std::fs::read_to_string(relay_tests::repo_path(&file)).unwrap(),
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
            move || std::fs::read_to_string(relay_tests::repo_path(&file)).unwrap(),
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
                "jira-admin",
                json!({"email": JIRA_EMAIL, "api_token": JIRA_TOKEN}),
            ),
            (
                "servicenow-sender",
                json!({"username": "snow.sender", "password": "sender-pw"}),
            ),
            ("jira-cloud-webhook", json!({"hmac": HMAC_KEY})),
            ("jira-dc", json!({"pat": DC_PAT})),
            ("atlassian-org", json!({"api_key": ORG_API_KEY})),
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
        let req = relay_tests::jira_webhook(
            &format!("/webhooks/{endpoint}?token={WEBHOOK_TOKEN}"),
            payload.to_string(),
            delivery,
        );
        relay_tests::status_of(&self.ingress, req).await
    }

    /// Posts a webhook signed with `X-Hub-Signature` (HMAC endpoints).
    async fn post_signed(&self, endpoint: &str, payload: &Value, delivery: &str) -> u16 {
        let body = payload.to_string();
        let signature = relay_tests::sign(HMAC_KEY, body.as_bytes());
        let mut req = relay_tests::jira_webhook(&format!("/webhooks/{endpoint}"), body, delivery);
        req.headers_mut()
            .insert("x-hub-signature", signature.parse().unwrap());
        relay_tests::status_of(&self.ingress, req).await
    }

    /// Posts a ServiceNow sender event (Basic auth).
    pub(crate) async fn post_sn(&self, payload: &Value) -> u16 {
        let req = relay_tests::servicenow_event(
            "/webhooks/servicenow",
            payload.to_string(),
            "snow.sender:sender-pw",
        );
        relay_tests::status_of(&self.ingress, req).await
    }

    /// One event-source round (up to 10 messages, a 60 s invocation).
    /// Returns (records handed to the handler, ids it reported failed).
    async fn round(&self) -> (Vec<String>, Vec<String>) {
        let r = relay_tests::event_source::round(
            &self.sqs,
            &self.queue_url,
            10,
            &self.worker,
            &self.inbox,
            Duration::from_secs(60),
        )
        .await;
        (r.seen, r.failed)
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

/// Receives what is visible as worker messages (without invoking anything).
async fn receive(r: &Relay) -> Vec<shared::queue::InMessage> {
    let msgs = relay_tests::event_source::receive(&r.sqs, &r.queue_url, 10)
        .await
        .expect("receive from moto");
    relay_tests::event_source::in_messages(&msgs, &r.queue_url)
}
