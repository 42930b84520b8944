//! Secret hygiene: the suite's main scenarios run with recognisable secret
//! values (`SECRET-CANARY-<random>-…`: webhook token and HMAC key, the
//! ServiceNow password and OAuth client secret, the Jira API token and
//! OAuth client secret, and every access and refresh token the sandboxes
//! issue), and the test fails if any of them shows up in the captured logs
//! (TRACE, every target), an HTTP error body from the intake, the `Debug`
//! output of configs, envelopes, errors, outcomes and connectors, a dead
//! letter (body and reason), or a panic message.
//!
//! Covered: good and rejected tokens and signatures, Basic and OAuth
//! (client credentials and 3LO with rotating refresh tokens written back)
//! to the targets, a 401 with the secret re-read after rotation, a 401 that
//! persists, revoked consent, dead-lettered events, and secret-store
//! errors (a malformed or world-readable secrets file, a missing key). The
//! scanner proves it can fail on canaries planted on purpose. The
//! `relay serve` process is checked in `cli/tests/secret_hygiene.rs`.

use crate::logcap::Captured;
use axum::body::Body;
use base64::Engine as _;
use http::Request;
use relay_tests::canary::{new_base as canary_base, Scanner};
use relay_tests::faults::{Fault, Match};
use relay_tests::jira_server::{JiraServer, DEFAULT_CLIENT_ID, DEFAULT_EMAIL};
use relay_tests::servicenow_server::{ServiceNowServer, DEFAULT_USER};
use relay_tests::{fixtures_dir, sign};
use relay_tests::{retarget, set_auth};
use serde_json::{json, Value};
use shared::config::Config;
use shared::intake::router::{app, IngressState};
use shared::outbound::executor::Connectors;
use shared::outbound::rest::http_client;
use shared::outbound::{Budget, ConnectorSettings, RestConnector};
use shared::queue::MemoryInbox;
use shared::queue::MemoryQueue;
use shared::secrets::secret::SecretRef;
use shared::secrets::{CachedSecretStore, LocalSecretStore, SecretStore};
use shared::support::clock::SystemClock;
use shared::worker::{BatchReport, BatchSettings, Worker};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tower::ServiceExt;

/// Everything the test looked at, by where it came from.
#[derive(Default)]
struct Seen {
    places: Vec<(String, String)>,
}

impl Seen {
    fn add(&mut self, place: impl Into<String>, text: impl Into<String>) {
        self.places.push((place.into(), text.into()));
    }

    /// Places where a canary was found, with a bounded excerpt.
    fn leaks(&self, scanner: &Scanner) -> Vec<String> {
        self.places
            .iter()
            .filter_map(|(place, text)| {
                let form = scanner.find(text)?;
                let excerpt: String = text.chars().take(400).collect();
                Some(format!("{place} ({form}): {excerpt}"))
            })
            .collect()
    }
}

/// Records panic messages (chained to the default hook).
fn record_panics() -> Arc<Mutex<Vec<String>>> {
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let keep = seen.clone();
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        keep.lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(info.to_string());
        previous(info);
    }));
    seen
}

fn write_secrets(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

/// A relay over a secrets file: the intake, a worker, and what they left.
struct Rig {
    config: Arc<Config>,
    store: Arc<dyn SecretStore>,
    ingress: axum::Router,
    queue: Arc<MemoryQueue>,
    worker: Worker,
    inbox: MemoryInbox,
    taken: Mutex<usize>,
}

impl Rig {
    fn new(config: Arc<Config>, secrets: &Path, max_receive_count: Option<u32>) -> Self {
        let store: Arc<dyn SecretStore> = Arc::new(
            CachedSecretStore::new(LocalSecretStore::open_with_env(secrets, []).unwrap())
                .min_refetch(Duration::ZERO),
        );
        let queue = Arc::new(MemoryQueue::new());
        let ingress = app(IngressState {
            config: config.clone(),
            secrets: store.clone(),
            queue: queue.clone(),
            clock: Arc::new(SystemClock),
        });
        let settings = ConnectorSettings {
            max_wait: Duration::from_millis(300),
            ..ConnectorSettings::default()
        };
        let connectors = Connectors::from_config(&config, http_client(), store.clone(), settings);
        let worker = Worker::new(
            config.clone(),
            connectors,
            BatchSettings {
                max_receive_count,
                ..BatchSettings::default()
            },
        );
        Self {
            config,
            store,
            ingress,
            queue,
            worker,
            inbox: MemoryInbox::default(),
            taken: Mutex::new(0),
        }
    }

    /// Sends a request to the intake; the status, and the body into `seen`.
    async fn send(&self, seen: &mut Seen, req: Request<Body>) -> u16 {
        let what = format!("{} {}", req.method(), req.uri().path());
        let res = self.ingress.clone().oneshot(req).await.unwrap();
        let status = res.status().as_u16();
        let body = axum::body::to_bytes(res.into_body(), usize::MAX)
            .await
            .unwrap();
        seen.add(
            format!("intake answer to {what} ({status})"),
            String::from_utf8_lossy(&body),
        );
        status
    }

    async fn post(&self, seen: &mut Seen, path: &str, body: &Value, delivery: &str) -> u16 {
        let req = relay_tests::jira_webhook(path, body.to_string(), delivery);
        self.send(seen, req).await
    }

    /// Runs what was queued since the last call, as receive `receive_count`.
    async fn work(&self, seen: &mut Seen, receive_count: u32) -> BatchReport {
        let from = std::mem::replace(&mut *self.taken.lock().unwrap(), self.queue.len());
        let msgs = relay_tests::queued(&self.queue, from, receive_count);
        let report = self
            .worker
            .run_batch(
                &self.inbox,
                &msgs,
                &Budget::from_now(Duration::from_secs(30)),
            )
            .await;
        seen.add("batch report (Debug)", format!("{report:?}"));
        for m in &msgs {
            seen.add("queued message (Debug)", format!("{m:?}"));
            if let Ok(env) = shared::intake::envelope::Envelope::decode(&m.body) {
                seen.add("envelope (Debug)", format!("{env:?}"));
            }
        }
        report
    }

    /// Dead letters so far into `seen`; returns their reasons.
    fn dead_letters(&self, seen: &mut Seen) -> Vec<String> {
        let dead = self.inbox.dead.lock().unwrap();
        for (m, reason) in dead.iter() {
            seen.add("dead letter reason", reason.clone());
            seen.add("dead letter body", m.body.clone());
            seen.add("dead letter (Debug)", format!("{m:?}"));
        }
        dead.iter().map(|(_, r)| r.clone()).collect()
    }

    /// `Debug` of the config, its connections and their connectors, and of
    /// what the store returns for each secret the config names.
    async fn debug_outputs(&self, seen: &mut Seen) {
        seen.add("config (Debug)", format!("{:?}", self.config));
        for c in &self.config.connections {
            seen.add("connection (Debug)", format!("{c:?}"));
            let conn = RestConnector::new(
                c.clone(),
                http_client(),
                self.store.clone(),
                ConnectorSettings::default(),
            );
            seen.add("connector (Debug)", format!("{conn:?}"));
        }
        for id in ["relay/webhook", "relay/servicenow", "relay/jira"] {
            match self.store.fetch(id).await {
                Ok(v) => {
                    seen.add("secret versions (Debug)", format!("{v:?}"));
                    for key in ["token", "password", "api_token", "client_secret"] {
                        let r = SecretRef::new(id, Some(key));
                        seen.add("resolved secret (Debug)", format!("{:?}", v.resolve(&r)));
                    }
                }
                Err(e) => seen.add("secret error", format!("{e} / {e:?}")),
            }
        }
    }
}

fn fixture(name: &str) -> Value {
    relay_tests::jira_fixture(name).expect("checked at the start")
}

/// Jira → ServiceNow with Basic, attachments from Jira with an API token,
/// rotation, a lasting 401, a 400, and secret-store errors.
async fn basic_and_rotation(c: &str, seen: &mut Seen) {
    let sn = ServiceNowServer::start().await;
    let jira = JiraServer::start().await;
    let (token, hmac) = (format!("{c}-webhook-token"), format!("{c}-hmac-key"));
    let (pw, pw2) = (format!("{c}-sn-password"), format!("{c}-sn-password-2"));
    let api_token = format!("{c}-jira-api-token");
    sn.set_basic(DEFAULT_USER, &pw);
    jira.set_basic(DEFAULT_EMAIL, &api_token);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("secrets.yaml");
    let file = |sn_pw: &str| {
        format!(
            "secrets:\n  relay/webhook: {{ token: {token}, hmac: {hmac} }}\n  relay/servicenow: {{ username: {DEFAULT_USER}, password: {sn_pw} }}\n  relay/jira: {{ email: {DEFAULT_EMAIL}, api_token: {api_token} }}\n"
        )
    };
    write_secrets(&path, &file(&pw));
    let yaml = relay_tests::example_yaml("jira-to-servicenow", &sn.base_url(), &jira.base_url());
    let config = Arc::new(Config::from_yaml(&yaml, "hygiene.yaml", |_| None).unwrap());
    let rig = Rig::new(config, &path, Some(1));
    let hook = format!("/webhooks/jira?token={token}");
    let created = fixture("mattermost__jira-issue-created_cloud.json");
    let (key, id) = ("KT-22", "10509");

    // Intake: good and refused credentials.
    assert_eq!(rig.post(seen, &hook, &created, "h-1").await, 202);
    let refused = [
        format!("/webhooks/jira?token={token}-not-quite"),
        format!("/webhooks/jira?token={c}-old-token"),
        format!("/webhooks/nope?token={token}"),
        "/webhooks/jira".to_owned(),
    ];
    for p in &refused {
        let status = rig.post(seen, p, &created, "h-x").await;
        assert!(matches!(status, 401 | 404), "{p}: {status}");
    }
    let body = created.to_string();
    for (key_used, expected) in [(hmac.as_str(), 202), (&format!("{c}-other-key"), 401)] {
        let req = Request::post("/webhooks/jira")
            .header("content-type", "application/json")
            .header("x-atlassian-webhook-identifier", format!("sig-{expected}"))
            .header("x-hub-signature", sign(key_used, body.as_bytes()))
            .body(Body::from(body.clone()))
            .unwrap();
        assert_eq!(rig.send(seen, req).await, expected);
    }
    let req = Request::post(&hook)
        .header("content-type", "text/plain")
        .body(Body::from(body.clone()))
        .unwrap();
    assert_eq!(rig.send(seen, req).await, 415);
    let report = rig.work(seen, 1).await;
    assert!(report.failed.is_empty(), "{report:?}");

    // An attachment fetched from Jira with the API token.
    let url = jira.add_file("a.txt", "text/plain", b"hello".to_vec());
    let mut attachment = retarget(fixture("zulip__attachment-created_cloud.json"), key, id);
    attachment["attachment"]["content"] = json!(url);
    assert_eq!(rig.post(seen, &hook, &attachment, "h-att").await, 202);
    let report = rig.work(seen, 1).await;
    assert_eq!(report.outcomes[0].1, "applied", "{report:?}");

    // Rotation: ServiceNow and the file change; a 401, the file re-read, applied.
    sn.set_basic(DEFAULT_USER, &pw2);
    write_secrets(&path, &file(&pw2));
    let status = retarget(
        fixture("mattermost__jira-issue-updated-status_cloud.json"),
        key,
        id,
    );
    assert_eq!(rig.post(seen, &hook, &status, "h-rot").await, 202);
    let report = rig.work(seen, 1).await;
    assert_eq!(report.outcomes[0].1, "applied", "{report:?}");

    // A 401 that persists (the file was not updated), on the last receive:
    // dead-lettered with its reason.
    sn.set_basic(DEFAULT_USER, &format!("{c}-sn-password-3"));
    let comment = retarget(fixture("mattermost__comment-created_cloud.json"), key, id);
    assert_eq!(rig.post(seen, &hook, &comment, "h-401").await, 202);
    let report = rig.work(seen, 1).await;
    assert_eq!(report.outcomes[0].1, "dead", "{report:?}");

    // A 400 from the target: dead-lettered with the target's message.
    sn.set_basic(DEFAULT_USER, &pw2);
    sn.faults().push(
        Match::method_path(http::Method::PATCH, "/api/now/table/incident/"),
        Fault::status(400),
        1,
    );
    let mut second = comment.clone();
    second["comment"]["id"] = json!("99002");
    assert_eq!(rig.post(seen, &hook, &second, "h-400").await, 202);
    let report = rig.work(seen, 1).await;
    assert_eq!(report.outcomes[0].1, "dead", "{report:?}");
    let reasons = rig.dead_letters(seen);
    assert_eq!(reasons.len(), 2, "{reasons:?}");

    // Secret-store errors. A malformed file (the canary on the broken line):
    // refused at open, and while running a reload keeps the old secrets and
    // logs why.
    write_secrets(
        &path,
        &format!("secrets:\n  relay/servicenow: {{ username: u, password: {c}-broken\n  relay/webhook: [{token}\n"),
    );
    match LocalSecretStore::open_with_env(&path, []) {
        Ok(_) => panic!("a malformed secrets file was accepted"),
        Err(e) => seen.add("malformed secrets file error", format!("{e} / {e:?}")),
    }
    // Values of the wrong shape: serde's messages quote the value they met.
    for text in [
        format!("secrets: {c}-a-secret-where-a-map-belongs\n"),
        format!("secrets:\n  relay/webhook: {{ token: [{c}-in-a-list] }}\n"),
        format!("secrets:\n  relay/webhook: {{ token: {{ deep: {c}-nested }} }}\n"),
        format!("{c}-unknown-top-level: 1\nsecrets: {{}}\n"),
    ] {
        let bad = dir.path().join("bad.yaml");
        write_secrets(&bad, &text);
        match LocalSecretStore::open_with_env(&bad, []) {
            Ok(_) => panic!("accepted: {text}"),
            Err(e) => seen.add("malformed secrets file error", format!("{e} / {e:?}")),
        }
    }
    sn.set_basic(DEFAULT_USER, &format!("{c}-sn-password-4"));
    let mut third = comment.clone();
    third["comment"]["id"] = json!("99003");
    assert_eq!(rig.post(seen, &hook, &third, "h-reload").await, 202);
    rig.work(seen, 1).await;
    rig.dead_letters(seen);
    // Readable by others: refused, naming the file and the fix.
    write_secrets(&path, &file(&pw2));
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    match LocalSecretStore::open_with_env(&path, []) {
        Ok(_) => panic!("a world-readable secrets file was accepted"),
        Err(e) => seen.add("secrets file permissions error", format!("{e} / {e:?}")),
    }
    // A key the secret does not have; a secret that does not exist.
    for r in [
        SecretRef::new("relay/servicenow", Some("nope")),
        SecretRef::new("relay/absent", Some("token")),
    ] {
        match rig.store.resolve(&r).await {
            Ok(v) => panic!("{r} resolved to {v:?}"),
            Err(e) => seen.add("secret error", format!("{e} / {e:?}")),
        }
    }
    rig.debug_outputs(seen).await;
}

/// ServiceNow over OAuth client credentials: tokens fetched, cached,
/// renewed after a 401; a wrong client secret refused.
async fn servicenow_oauth(c: &str, seen: &mut Seen) {
    let sn = ServiceNowServer::start().await;
    let jira = JiraServer::start().await;
    let secret = format!("{c}-sn-client-secret");
    sn.set_oauth_client("snow-client-id", &secret);
    sn.set_token_prefix(&format!("{c}-sn-token-"));
    let token = format!("{c}-webhook-token");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("secrets.yaml");
    let file = |s: &str| {
        format!(
            "secrets:\n  relay/webhook: {{ token: {token}, hmac: {c}-hmac }}\n  relay/servicenow: {{ client_id: snow-client-id, client_secret: {s} }}\n  relay/jira: {{ email: {DEFAULT_EMAIL}, api_token: {c}-api }}\n"
        )
    };
    write_secrets(&path, &file(&secret));
    let yaml = relay_tests::example_yaml("jira-to-servicenow", &sn.base_url(), &jira.base_url());
    let yaml = set_auth(
        &yaml,
        "servicenow",
        &format!(
            "    auth:\n      kind: oauth2\n      client_id: relay/servicenow#client_id\n      client_secret: relay/servicenow#client_secret\n      token_url: {}/oauth_token.do",
            sn.base_url()
        ),
    );
    let config = Arc::new(Config::from_yaml(&yaml, "hygiene-oauth.yaml", |_| None).unwrap());
    let rig = Rig::new(config, &path, Some(1));
    let hook = format!("/webhooks/jira?token={token}");
    let created = fixture("mattermost__jira-issue-created_cloud.json");
    assert_eq!(rig.post(seen, &hook, &created, "o-1").await, 202);
    assert_eq!(rig.work(seen, 1).await.outcomes[0].1, "applied");
    sn.expire_tokens();
    let status = retarget(
        fixture("mattermost__jira-issue-updated-status_cloud.json"),
        "KT-22",
        "10509",
    );
    assert_eq!(rig.post(seen, &hook, &status, "o-2").await, 202);
    assert_eq!(rig.work(seen, 1).await.outcomes[0].1, "applied");
    assert_eq!(sn.oauth_tokens_issued(), 2);
    // The client secret is changed at ServiceNow only: refused, dead.
    sn.set_oauth_client("snow-client-id", &format!("{c}-sn-client-secret-2"));
    sn.expire_tokens();
    let comment = retarget(
        fixture("mattermost__comment-created_cloud.json"),
        "KT-22",
        "10509",
    );
    assert_eq!(rig.post(seen, &hook, &comment, "o-3").await, 202);
    assert_eq!(rig.work(seen, 1).await.outcomes[0].1, "dead");
    let reasons = rig.dead_letters(seen);
    assert!(
        reasons.iter().any(|r| r.contains("oauth_token_refused")),
        "{reasons:?}"
    );
    rig.debug_outputs(seen).await;
}

/// Jira over OAuth 2.0 (3LO): login, refresh with rotation written back,
/// revoked consent dead-lettered.
async fn jira_three_legged(c: &str, seen: &mut Seen) {
    let jira = JiraServer::start().await;
    let sn = ServiceNowServer::start().await;
    let client_secret = format!("{c}-jira-client-secret");
    jira.set_oauth_client(DEFAULT_CLIENT_ID, &client_secret, 3600);
    jira.set_token_prefix(&format!("{c}-jira-token-"));
    let (refresh, cloud) = crate::oauth3lo::login_with(&jira, &client_secret).await;
    assert!(refresh.starts_with(c));
    let sender_pw = format!("{c}-sender-password");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("secrets.yaml");
    write_secrets(
        &path,
        &format!(
            "secrets:\n  relay/jira: {{ client_id: {DEFAULT_CLIENT_ID}, client_secret: {client_secret}, refresh_token: {refresh} }}\n  relay/servicenow: {{ username: u, password: {c}-unused }}\n  relay/servicenow-sender: {{ username: snow.sender, password: {sender_pw} }}\n"
        ),
    );
    let config = crate::oauth3lo::config(&jira, &sn, "relay/jira", &cloud);
    let rig = Rig::new(config, &path, None);
    let event: Value = serde_json::from_slice(
        &std::fs::read(relay_tests::repo_path(
            "shared/tests/events/servicenow-incident-created.json",
        ))
        .unwrap(),
    )
    .unwrap();
    let basic = |pw: &str| {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("snow.sender:{pw}"))
        )
    };
    let send = |ev: &Value, auth: String| {
        Request::post("/webhooks/servicenow")
            .header("content-type", "application/json")
            .header("authorization", auth)
            .body(Body::from(ev.to_string()))
            .unwrap()
    };
    assert_eq!(rig.send(seen, send(&event, basic(&sender_pw))).await, 202);
    let wrong = basic(&format!("{sender_pw}-wrong"));
    assert_eq!(rig.send(seen, send(&event, wrong)).await, 401);
    assert_eq!(rig.work(seen, 1).await.outcomes[0].1, "applied");
    assert_eq!(jira.oauth_refreshes(), 1);
    let rotated = std::fs::read_to_string(&path).unwrap();
    assert!(!rotated.contains(&refresh), "the refresh token rotated");
    // Consent revoked: the next event is dead with the reason.
    jira.revoke_consent();
    jira.expire_tokens();
    let mut second = event.clone();
    second["sys_id"] = json!("9d385017c611228701d22104cc95c372");
    second["number"] = json!("INC0010020");
    assert_eq!(rig.send(seen, send(&second, basic(&sender_pw))).await, 202);
    assert_eq!(rig.work(seen, 1).await.outcomes[0].1, "dead");
    let reasons = rig.dead_letters(seen);
    assert!(
        reasons[0].starts_with("oauth_consent_required"),
        "{reasons:?}"
    );
    rig.debug_outputs(seen).await;
}

#[tokio::test]
async fn no_secret_reaches_logs_error_bodies_debug_dead_letters_or_panics() {
    // given canary secrets, a TRACE capture and a panic recorder
    if fixtures_dir().is_none() {
        return;
    }
    let panics = record_panics();
    let c = canary_base();
    let scanner = Scanner::new(&c);
    let (cap, _guard) = Captured::start("trace");
    let mut seen = Seen::default();
    // when the main scenarios run with them
    basic_and_rotation(&c, &mut seen).await;
    servicenow_oauth(&c, &mut seen).await;
    jira_three_legged(&c, &mut seen).await;
    // then the capture saw them
    let logs = cap.text();
    assert!(
        logs.lines().count() > 100,
        "TRACE capture looks empty: {} lines",
        logs.lines().count()
    );
    for line in logs.lines() {
        seen.add("log line", line);
    }
    let panic_messages = panics.lock().unwrap().clone();
    for p in &panic_messages {
        seen.add("panic message", p.clone());
    }
    // and no canary reached a log line, an answer, a dead letter or a panic
    let leaks = seen.leaks(&scanner);
    assert!(
        leaks.is_empty(),
        "{} leaks of canary {c}:\n{}",
        leaks.len(),
        leaks.join("\n")
    );
    eprintln!(
        "secret hygiene: {} places checked ({} log lines), no canary found",
        seen.places.len(),
        logs.lines().count()
    );
}

/// The checks can fail: a canary planted in each kind of place is found.
#[tokio::test]
async fn the_scanner_finds_canaries_planted_on_purpose() {
    // given a canary and the same capture and collection
    let c = canary_base();
    let scanner = Scanner::new(&c);
    // Through the same capture and collection as the real test.
    let panics = record_panics();
    let (cap, guard) = Captured::start("trace");
    // debug!, not trace!: release builds compile trace! out (tracing's
    // release_max_level_debug), and the plant must be there in any profile.
    tracing::debug!(target: "shared::planted", token = %format!("{c}-token"), "planted");
    // when it is planted in a log line, a panic and a dead letter
    let planted_panic = tokio::spawn({
        let c = c.clone();
        async move { panic!("planted {c}") }
    })
    .await;
    assert!(planted_panic.is_err());
    drop(guard);
    let mut seen = Seen::default();
    for line in cap.text().lines() {
        seen.add("log line", line);
    }
    for p in panics.lock().unwrap().iter() {
        seen.add("panic message", p.clone());
    }
    // then each is found, and nothing else
    seen.add("dead letter reason", format!("target_rejected: {c}"));
    seen.add("clean", "nothing here");
    let leaks = seen.leaks(&scanner);
    assert_eq!(leaks.len(), 3, "{leaks:?}");
    assert!(leaks[0].starts_with("log line"), "{leaks:?}");
    assert!(leaks[1].starts_with("panic message"), "{leaks:?}");
}
