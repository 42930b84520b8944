//! OAuth 2.0 authorization code (3LO) with rotating refresh tokens against
//! the Jira sandbox's Atlassian-like token endpoint: first login, refresh,
//! rotation written back (local secrets file and Secrets Manager on moto),
//! two workers sharing one secret, revoked consent dead-lettered.

use relay_tests::jira_server::{JiraServer, CLOUD_ID, DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET};
use relay_tests::servicenow_server::ServiceNowServer;
use relay_tests::{aws_endpoint, sdk_config, servicenow_event, status_of, unique};
use serde_json::{json, Value};
use shared::config::Config;
use shared::intake::router::{app, IngressState};
use shared::outbound::rest::http_client;
use shared::outbound::rest::RestConnector;
use shared::outbound::{Budget, Call, CallBody, CallError, Connector, ConnectorSettings};
use shared::queue::MemoryInbox;
use shared::queue::MemoryQueue;
use shared::rules::plan::Method;
use shared::secrets::secret::SecretRef;
use shared::secrets::{AwsSecretStore, CachedSecretStore, LocalSecretStore, SecretStore};
use shared::support::clock::SystemClock;
use shared::worker::{BatchSettings, Worker};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

const REDIRECT: &str = "http://127.0.0.1:8765/callback";
const SENDER: &str = "snow.sender:sender-pw";

/// The first login as `relay jira oauth login` does it: consent (the
/// sandbox hands out a code), code exchange, accessible resources. Returns
/// the refresh token and the cloud id.
async fn login(jira: &JiraServer) -> (String, String) {
    login_with(jira, DEFAULT_CLIENT_SECRET).await
}

/// [`login`] with the app's client secret given.
pub(crate) async fn login_with(jira: &JiraServer, client_secret: &str) -> (String, String) {
    let code = jira.issue_auth_code(DEFAULT_CLIENT_ID, REDIRECT);
    let http = reqwest::Client::new();
    let exchange = || {
        http.post(format!("{}/oauth/token", jira.base_url()))
            .json(&json!({
                "grant_type": "authorization_code",
                "client_id": DEFAULT_CLIENT_ID,
                "client_secret": client_secret,
                "code": code,
                "redirect_uri": REDIRECT,
            }))
            .send()
    };
    let tokens: Value = exchange().await.unwrap().json().await.unwrap();
    let access = tokens["access_token"].as_str().unwrap();
    let refresh = tokens["refresh_token"].as_str().unwrap().to_owned();
    // The code is good for one exchange only.
    let again = exchange().await.unwrap();
    assert_eq!(again.status().as_u16(), 403);
    let sites: Value = http
        .get(format!(
            "{}/oauth/token/accessible-resources",
            jira.base_url()
        ))
        .bearer_auth(access)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(sites[0]["url"], json!(jira.base_url()));
    (refresh, sites[0]["id"].as_str().unwrap().to_owned())
}

fn auth_yaml(secret: &str, jira: &JiraServer) -> String {
    format!(
        "    auth:\n      kind: oauth_3lo\n      client_id: {secret}#client_id\n      client_secret: {secret}#client_secret\n      refresh_token: {secret}#refresh_token\n      token_url: {}/oauth/token\n      scopes: [read:jira-work, write:jira-work]",
        jira.base_url()
    )
}

/// The servicenow-to-jira example against the sandboxes, its Jira connection
/// on 3LO through the API gateway path (`/ex/jira/<cloudid>`).
pub(crate) fn config(
    jira: &JiraServer,
    sn: &ServiceNowServer,
    secret: &str,
    cloud: &str,
) -> Arc<Config> {
    let yaml = relay_tests::example_yaml(
        "servicenow-to-jira",
        &sn.base_url(),
        &format!("{}/ex/jira/{cloud}", jira.base_url()),
    );
    let yaml = relay_tests::set_auth(&yaml, "jira", &auth_yaml(secret, jira));
    Arc::new(Config::from_yaml(&yaml, "oauth3lo.yaml", |_| None).unwrap_or_else(|e| panic!("{e}")))
}

/// A secrets file (chmod 600) with the app's client and the first refresh token.
fn secrets_file(dir: &Path, refresh: &str) -> PathBuf {
    let path = dir.join("secrets.yaml");
    let text = format!(
        "# written by the test\nsecrets:\n  relay/jira: {{ client_id: {DEFAULT_CLIENT_ID}, client_secret: {DEFAULT_CLIENT_SECRET}, refresh_token: {refresh} }}\n  relay/servicenow: {{ username: u, password: p }}\n  relay/servicenow-sender: {{ username: snow.sender, password: sender-pw }}\n"
    );
    std::fs::write(&path, text).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    path
}

/// One worker process: its own secret cache over the shared file.
fn process_store(path: &Path) -> Arc<dyn SecretStore> {
    Arc::new(CachedSecretStore::new(
        LocalSecretStore::open_with_env(path, []).unwrap(),
    ))
}

fn connector(config: &Config, store: Arc<dyn SecretStore>) -> Arc<RestConnector> {
    let conn = config
        .connections
        .iter()
        .find(|c| c.name == "jira")
        .unwrap()
        .clone();
    Arc::new(RestConnector::new(
        conn,
        http_client(),
        store,
        ConnectorSettings::default(),
    ))
}

fn get_issue(key: &str) -> Call {
    Call {
        method: Method::Get,
        once: false,
        path: format!("/rest/api/3/issue/{key}"),
        query: vec![],
        headers: vec![],
        body: CallBody::None,
    }
}

async fn stored_refresh_token(store: &dyn SecretStore) -> String {
    store
        .fetch_latest("relay/jira")
        .await
        .unwrap()
        .resolve(&SecretRef::new("relay/jira", Some("refresh_token")))
        .unwrap()
        .current
        .expose()
        .to_owned()
}

async fn servers() -> (JiraServer, ServiceNowServer) {
    let jira = JiraServer::start().await;
    jira.set_contract_check(relay_tests::fixtures_dir().is_some());
    (jira, ServiceNowServer::start().await)
}

#[tokio::test]
async fn first_login_then_refresh_rotates_and_persists_the_refresh_token() {
    // given a first login and its refresh token in a secrets file
    let (jira, sn) = servers().await;
    let (first, cloud) = login(&jira).await;
    assert_eq!(cloud, CLOUD_ID);
    let dir = tempfile::tempdir().unwrap();
    let path = secrets_file(dir.path(), &first);
    let config = config(&jira, &sn, "relay/jira", &cloud);
    let store = process_store(&path);
    let c = connector(&config, store.clone());
    let key = jira.seed_issue("OPS", json!({"summary": "3LO"}));
    let budget = Budget::from_now(Duration::from_secs(30));

    // when the first call is made
    let reply = c.call(&get_issue(&key), &budget).await.unwrap();
    // then
    assert_eq!(reply.status, 200, "{:?}", reply.error);
    // Refreshed once, through the gateway path; the new token was stored
    // and the old one is dead.
    assert_eq!(jira.oauth_refreshes(), 1);
    assert_eq!(c.oauth_tokens_fetched(), 1);
    let valid = jira.valid_refresh_tokens();
    assert_eq!(valid.len(), 1);
    assert_ne!(valid[0], first);
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains(&valid[0]), "the file holds the rotated token");
    assert!(!text.contains(&first));
    assert!(text.contains("sender-pw"), "other secrets kept");
    assert!(jira.requests().iter().any(|r| r
        .path
        .starts_with(&format!("/ex/jira/{CLOUD_ID}/rest/api/3/issue/"))));

    // when
    // Cached: no second refresh while the token is valid.
    c.call(&get_issue(&key), &budget).await.unwrap();
    // then no second refresh
    assert_eq!(jira.oauth_refreshes(), 1);

    // when
    // The target refuses the access token (expired early): refresh again,
    // with the rotated token read back.
    jira.expire_tokens();
    let reply = c.call(&get_issue(&key), &budget).await.unwrap();
    // then
    assert_eq!(reply.status, 200);
    assert_eq!(jira.oauth_refreshes(), 2);
    assert_eq!(
        stored_refresh_token(&*store).await,
        jira.valid_refresh_tokens()[0]
    );
    // when
    // A new process (fresh cache) carries on from the stored token.
    let other = connector(&config, process_store(&path));
    other.call(&get_issue(&key), &budget).await.unwrap();
    // then
    assert_eq!(jira.oauth_refreshes(), 3);
    assert!(jira.violations().is_empty(), "{:?}", jira.violations());
}

#[tokio::test]
async fn rotation_is_persisted_in_secrets_manager() {
    // given a refresh token in Secrets Manager
    let Some(moto) = aws_endpoint() else {
        return;
    };
    let (jira, sn) = servers().await;
    let (first, cloud) = login(&jira).await;
    let conf = sdk_config(&moto).await;
    let sm = aws_sdk_secretsmanager::Client::new(&conf);
    let id = unique("relay-3lo");
    sm.create_secret()
        .name(&id)
        .secret_string(
            json!({"client_id": DEFAULT_CLIENT_ID, "client_secret": DEFAULT_CLIENT_SECRET,
                   "refresh_token": first, "other": "kept"})
            .to_string(),
        )
        .send()
        .await
        .unwrap();
    let config = config(&jira, &sn, &id, &cloud);
    let store: Arc<dyn SecretStore> =
        Arc::new(CachedSecretStore::new(AwsSecretStore::from_conf(&conf)));
    let c = connector(&config, store.clone());
    let key = jira.seed_issue("OPS", json!({"summary": "3LO on AWS"}));
    let budget = Budget::from_now(Duration::from_secs(30));
    // when the token is refreshed twice
    assert_eq!(c.call(&get_issue(&key), &budget).await.unwrap().status, 200);
    jira.expire_tokens();
    assert_eq!(c.call(&get_issue(&key), &budget).await.unwrap().status, 200);
    // then each rotation is stored, other keys kept
    assert_eq!(jira.oauth_refreshes(), 2);

    let read = |stage: &'static str| {
        let sm = sm.clone();
        let id = id.clone();
        async move {
            let v = sm
                .get_secret_value()
                .secret_id(id)
                .version_stage(stage)
                .send()
                .await
                .unwrap();
            serde_json::from_str::<Value>(v.secret_string().unwrap()).unwrap()
        }
    };
    let current = read("AWSCURRENT").await;
    assert_eq!(
        current["refresh_token"],
        json!(jira.valid_refresh_tokens()[0])
    );
    assert_eq!(current["other"], json!("kept"));
    assert_eq!(current["client_id"], json!(DEFAULT_CLIENT_ID));
    let previous = read("AWSPREVIOUS").await;
    assert_ne!(previous["refresh_token"], current["refresh_token"]);

    // when
    // A stale expected version is refused (compare-and-swap).
    let err = store
        .put(&id, "refresh_token", "x", Some("not-the-current-version"))
        .await
        .unwrap_err();
    // then
    assert_eq!(err.reason(), "secret_version_conflict");
}

#[tokio::test]
async fn two_workers_share_one_secret_without_invalid_grant() {
    // given two workers over one secrets file
    let (jira, sn) = servers().await;
    // Short-lived access tokens: cached for 1 s (half of 2 s).
    jira.set_oauth_client(DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, 2);
    let (first, cloud) = login(&jira).await;
    let dir = tempfile::tempdir().unwrap();
    let path = secrets_file(dir.path(), &first);
    let config = config(&jira, &sn, "relay/jira", &cloud);
    // Two "processes": each its own connector and its own secret cache over
    // the same file.
    let a = connector(&config, process_store(&path));
    let b = connector(&config, process_store(&path));
    let key = jira.seed_issue("OPS", json!({"summary": "busy"}));
    let budget = Budget::from_now(Duration::from_secs(60));

    async fn burst(c: &Arc<RestConnector>, key: &str, budget: &Budget, n: usize) {
        let mut set = tokio::task::JoinSet::new();
        for _ in 0..n {
            let c = c.clone();
            let call = get_issue(key);
            let budget = *budget;
            set.spawn(async move { c.call(&call, &budget).await });
        }
        while let Some(r) = set.join_next().await {
            let r: Result<shared::outbound::Reply, CallError> = r.unwrap();
            assert_eq!(r.expect("no call fails").status, 200);
        }
    }

    // when
    // A refreshes first; B still holds the used-up token in its cache, gets
    // invalid_grant, re-reads the secret and succeeds with A's rotation.
    burst(&a, &key, &budget, 10).await;
    burst(&b, &key, &budget, 10).await;
    // then
    assert_eq!(a.oauth_tokens_fetched(), 1, "one refresh per process");
    assert_eq!(b.oauth_tokens_fetched(), 1, "one refresh per process");
    assert_eq!(jira.oauth_refreshes(), 2);

    // when
    // After expiry, both at once.
    for round in 1..=2u64 {
        tokio::time::sleep(Duration::from_millis(1100)).await;
        tokio::join!(burst(&a, &key, &budget, 10), burst(&b, &key, &budget, 10));
        // then
        assert_eq!(a.oauth_tokens_fetched(), 1 + round);
        assert_eq!(b.oauth_tokens_fetched(), 1 + round);
    }
    assert_eq!(jira.oauth_refreshes(), 6);
    let valid = jira.valid_refresh_tokens();
    assert_eq!(valid.len(), 1);
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains(&valid[0]), "the last rotation is stored");
}

#[tokio::test]
async fn revoked_consent_dead_letters_with_oauth_consent_required() {
    // given a worker on 3LO
    let (jira, sn) = servers().await;
    let (first, cloud) = login(&jira).await;
    let dir = tempfile::tempdir().unwrap();
    let path = secrets_file(dir.path(), &first);
    let config = config(&jira, &sn, "relay/jira", &cloud);
    let store = process_store(&path);
    let queue = Arc::new(MemoryQueue::new());
    let ingress = app(IngressState {
        config: config.clone(),
        secrets: store.clone(),
        queue: queue.clone(),
        clock: Arc::new(SystemClock),
    });
    let connectors = shared::outbound::executor::Connectors::from_config(
        &config,
        http_client(),
        store,
        ConnectorSettings::default(),
    );
    let worker = Worker::new(config, connectors, BatchSettings::default());

    // when the user revokes consent and two incidents arrive
    jira.revoke_consent();
    let event = std::fs::read(relay_tests::repo_path(
        "shared/tests/events/servicenow-incident-created.json",
    ))
    .unwrap();
    let req = servicenow_event("/webhooks/servicenow", event.clone(), SENDER);
    assert_eq!(status_of(&ingress, req).await, 202);
    // A second incident: consent is still gone, and the token endpoint must
    // not be asked again (no storm of refused refreshes).
    let second = String::from_utf8(event.clone())
        .unwrap()
        .replace("INC0010019", "INC0010020")
        .replace(
            "9d385017c611228701d22104cc95c371",
            "9d385017c611228701d22104cc95c372",
        );
    assert_ne!(second.as_bytes(), &event[..], "the sample names INC0010019");
    let req = servicenow_event("/webhooks/servicenow", second, SENDER);
    assert_eq!(status_of(&ingress, req).await, 202);
    let messages = relay_tests::queued(&queue, 0, 1);
    assert_eq!(messages.len(), 2);
    let inbox = MemoryInbox::default();
    let report = worker
        .run_batch(
            &inbox,
            &messages,
            &Budget::from_now(Duration::from_secs(30)),
        )
        .await;
    // then both are dead-lettered, and the token endpoint asked once
    assert!(
        report.failed.is_empty(),
        "dead-lettered, not retried: {report:?}"
    );
    let dead = inbox.dead.lock().unwrap();
    assert_eq!(dead.len(), 2);
    for (_, reason) in dead.iter() {
        assert!(reason.starts_with("oauth_consent_required"), "{reason}");
    }
    assert!(jira.issues().is_empty());
    assert_eq!(jira.oauth_refreshes(), 0);
    assert_eq!(
        jira.oauth_refusals(),
        1,
        "one refused refresh, not one per event"
    );
}

/// A worker whose read of the secret raced another worker's write: its first
/// uncached read answers the value from before the rotation.
struct Lagging {
    inner: Arc<dyn SecretStore>,
    stale: std::sync::Mutex<Option<Arc<shared::secrets::SecretVersions>>>,
}

type Versions = Result<Arc<shared::secrets::SecretVersions>, shared::secrets::SecretError>;
type Boxed<'t, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 't>>;

// `SecretStore` is an `#[async_trait]` trait; this crate does not depend on
// the macro, so the methods are written out as it expands them.
impl SecretStore for Lagging {
    fn fetch<'a, 'b, 't>(&'a self, id: &'b str) -> Boxed<'t, Versions>
    where
        'a: 't,
        'b: 't,
        Self: 't,
    {
        Box::pin(async move { self.inner.fetch(id).await })
    }

    fn fetch_latest<'a, 'b, 't>(&'a self, id: &'b str) -> Boxed<'t, Versions>
    where
        'a: 't,
        'b: 't,
        Self: 't,
    {
        Box::pin(async move {
            let stale = self.stale.lock().unwrap().take();
            match stale {
                Some(v) => Ok(v),
                None => self.inner.fetch_latest(id).await,
            }
        })
    }

    fn put<'a, 'b, 'c, 'd, 'e, 't>(
        &'a self,
        id: &'b str,
        key: &'c str,
        value: &'d str,
        expected: Option<&'e str>,
    ) -> Boxed<'t, Result<String, shared::secrets::SecretError>>
    where
        'a: 't,
        'b: 't,
        'c: 't,
        'd: 't,
        'e: 't,
        Self: 't,
    {
        Box::pin(async move { self.inner.put(id, key, value, expected).await })
    }
}

#[tokio::test]
async fn a_worker_that_lost_the_race_rereads_the_secret_and_retries_once() {
    // given two workers, B's first read of the secret stale
    let (jira, sn) = servers().await;
    let (first, cloud) = login(&jira).await;
    let dir = tempfile::tempdir().unwrap();
    let path = secrets_file(dir.path(), &first);
    let config = config(&jira, &sn, "relay/jira", &cloud);
    let b_store = process_store(&path);
    let before = b_store.fetch_latest("relay/jira").await.unwrap();
    let a = connector(&config, process_store(&path));
    let b = connector(
        &config,
        Arc::new(Lagging {
            inner: b_store,
            stale: std::sync::Mutex::new(Some(before)),
        }),
    );
    let key = jira.seed_issue("OPS", json!({"summary": "race"}));
    let budget = Budget::from_now(Duration::from_secs(30));
    // when A refreshes, then B calls
    assert_eq!(a.call(&get_issue(&key), &budget).await.unwrap().status, 200);
    // B starts from the token A just used up: invalid_grant, re-read, retry.
    assert_eq!(b.call(&get_issue(&key), &budget).await.unwrap().status, 200);
    // then
    assert_eq!(b.oauth_tokens_fetched(), 1);
    assert_eq!(jira.oauth_refreshes(), 2);
    let token_posts = jira
        .requests()
        .iter()
        .filter(|r| r.path == "/oauth/token")
        .count();
    assert_eq!(
        token_posts,
        2 + 1 + 2,
        "login (2), A (1), B refused + retried (2)"
    );
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains(&jira.valid_refresh_tokens()[0]));
}
