//! Test support for jira-relay: finding the shared fixtures, the test
//! configs (`tests/configs/`) and the shipped examples aimed at the contract
//! servers, reaching the AWS emulator (moto) that the test command starts,
//! Lambda's SQS event source played against it ([`event_source`]), and small
//! HTTP helpers (a webhook as Jira or ServiceNow posts it).
//! Test-only: no product binary links this crate.
#![forbid(unsafe_code)]

// The contract servers live in the `sandbox` crate (the demo runs them too);
// tests reach them through these re-exports.
pub use sandbox::{canary, faults, fixtures_dir, jira_server, missing, openapi, servicenow_server};

pub mod event_source;

use std::path::PathBuf;

/// A path in the repository (relative to the workspace root).
pub fn repo_path(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(rel)
}

/// A config file under `tests/configs/`, its `${NAME}`s filled in from
/// `vars` (any other `${…}` is an error).
pub fn test_config(name: &str, vars: &[(&str, &str)]) -> shared::config::Config {
    let path = repo_path("tests/configs").join(name);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    shared::config::Config::from_yaml(&text, name, |var| {
        vars.iter()
            .find(|(k, _)| *k == var)
            .map(|(_, v)| (*v).to_owned())
    })
    .unwrap_or_else(|e| panic!("{e}"))
}

/// A shipped example (`examples/<name>.yaml`) with its placeholder ServiceNow
/// and Jira base URLs pointed at the contract servers.
pub fn example_yaml(name: &str, sn_base: &str, jira_base: &str) -> String {
    std::fs::read_to_string(repo_path(&format!("examples/{name}.yaml")))
        .unwrap()
        .replace("https://example.service-now.com", sn_base)
        .replace("https://example.atlassian.net", jira_base)
}

/// Replaces the `auth:` block of connection `name` (under `connections:`)
/// in a config's YAML with `auth`; the block runs to the next blank line or
/// the end of the file.
pub fn set_auth(yaml: &str, name: &str, auth: &str) -> String {
    let conns = yaml
        .find("\nconnections:\n")
        .expect("a connections section");
    let start = conns
        + yaml[conns..]
            .find(&format!("- name: {name}\n"))
            .unwrap_or_else(|| panic!("no connection {name}"));
    let auth_at = start + yaml[start..].find("    auth:\n").unwrap();
    let end = yaml[auth_at + 10..]
        .find("\n\n")
        .map_or(yaml.len(), |e| auth_at + 10 + e);
    format!("{}{auth}{}", &yaml[..auth_at], &yaml[end..])
}

/// What a `MemoryQueue` holds from message `from` (0-based) on, as the
/// worker receives it on its `receive_count`th receive.
pub fn queued(
    queue: &shared::queue::MemoryQueue,
    from: usize,
    receive_count: u32,
) -> Vec<shared::queue::InMessage> {
    queue
        .messages()
        .into_iter()
        .skip(from)
        .map(|(id, m)| shared::queue::InMessage {
            id,
            group_id: Some(m.group_id),
            dedup_id: Some(m.dedup_id),
            body: m.body,
            receive_count,
            receipt: None,
        })
        .collect()
}

/// A webhook as Jira posts it: a JSON body and its delivery identifier.
pub fn jira_webhook(
    path: &str,
    body: impl Into<axum::body::Body>,
    delivery: &str,
) -> http::Request<axum::body::Body> {
    http::Request::post(path)
        .header("content-type", "application/json")
        .header("x-atlassian-webhook-identifier", delivery)
        .body(body.into())
        .unwrap()
}

/// An event as the ServiceNow business rule posts it: a JSON body, Basic
/// auth as `user_pass` (`user:password`).
pub fn servicenow_event(
    path: &str,
    body: impl Into<axum::body::Body>,
    user_pass: &str,
) -> http::Request<axum::body::Body> {
    use base64::Engine as _;
    let basic = base64::engine::general_purpose::STANDARD.encode(user_pass);
    http::Request::post(path)
        .header("content-type", "application/json")
        .header("authorization", format!("Basic {basic}"))
        .body(body.into())
        .unwrap()
}

/// Sends `req` through `router` in-process; returns the status.
pub async fn status_of(router: &axum::Router, req: http::Request<axum::body::Body>) -> u16 {
    use tower::ServiceExt;
    router
        .clone()
        .oneshot(req)
        .await
        .expect("the router never errors")
        .status()
        .as_u16()
}

/// All `*.json` files of a fixtures sub-folder, sorted, with their contents.
pub fn fixture_files(sub: &str) -> Option<Vec<(String, Vec<u8>)>> {
    let dir = fixtures_dir()?.join(sub);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    Some(
        files
            .into_iter()
            .map(|p| {
                let name = p.file_name().unwrap().to_string_lossy().into_owned();
                (name, std::fs::read(&p).unwrap())
            })
            .collect(),
    )
}

/// A fixture's JSON (`rel` under the fixtures folder); `None` without the
/// fixtures.
pub fn fixture_json(rel: &str) -> Option<serde_json::Value> {
    let path = fixtures_dir()?.join(rel);
    let bytes =
        std::fs::read(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    Some(serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
}

/// One of the real Jira webhooks (`jira-webhooks/<name>` in the fixtures).
pub fn jira_fixture(name: &str) -> Option<serde_json::Value> {
    fixture_json(&format!("jira-webhooks/{name}"))
}

/// Points a Jira payload at another issue (the fixtures describe different
/// issues; a story needs one).
pub fn retarget(mut v: serde_json::Value, key: &str, id: &str) -> serde_json::Value {
    v["issue"]["key"] = serde_json::json!(key);
    v["issue"]["id"] = serde_json::json!(id);
    v
}

/// A JSON string's text (`""` for anything else), as ServiceNow records
/// hold every value.
pub fn text(v: &serde_json::Value) -> &str {
    v.as_str().unwrap_or_default()
}

/// The moto endpoint the test command started (`RELAY_TEST_AWS_ENDPOINT`).
pub fn aws_endpoint() -> Option<String> {
    match std::env::var("RELAY_TEST_AWS_ENDPOINT") {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            missing(
                "the AWS emulator (RELAY_TEST_AWS_ENDPOINT)",
                "run the suite with `bash infra/scripts/test.sh`, which starts moto",
            );
            None
        }
    }
}

/// AWS SDK configuration aimed at `endpoint` with dummy credentials, whatever
/// the environment says.
pub async fn sdk_config(endpoint: &str) -> aws_config::SdkConfig {
    use aws_config::Region;
    let creds = aws_sdk_sqs::config::Credentials::new("test", "test", None, None, "relay-tests");
    shared::support::aws::defaults()
        .region(Region::new("us-east-1"))
        .credentials_provider(creds)
        .endpoint_url(endpoint)
        .timeout_config(
            aws_config::timeout::TimeoutConfig::builder()
                .connect_timeout(std::time::Duration::from_secs(1))
                .operation_timeout(std::time::Duration::from_secs(5))
                .build(),
        )
        .retry_config(aws_config::retry::RetryConfig::standard().with_max_attempts(2))
        .load()
        .await
}

/// A unique name for per-test resources.
pub fn unique(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!(
        "{prefix}-{}-{}-{nanos}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    )
}

/// Creates a FIFO queue (content-based dedup off, like the template) and
/// returns its URL.
pub async fn create_fifo_queue(sqs: &aws_sdk_sqs::Client, name: &str) -> String {
    use aws_sdk_sqs::types::QueueAttributeName as A;
    sqs.create_queue()
        .queue_name(format!("{name}.fifo"))
        .attributes(A::FifoQueue, "true")
        .attributes(A::ContentBasedDeduplication, "false")
        .attributes(A::VisibilityTimeout, "30")
        .send()
        .await
        .expect("create FIFO queue in moto")
        .queue_url
        .unwrap()
}

/// A received message with what the tests assert on.
#[derive(Debug, Clone)]
pub struct Received {
    pub body: String,
    pub group_id: String,
    pub dedup_id: String,
    pub attributes: std::collections::HashMap<String, String>,
}

/// Receives everything visible now (several rounds of up to 10).
pub async fn drain(sqs: &aws_sdk_sqs::Client, url: &str) -> Vec<Received> {
    use aws_sdk_sqs::types::MessageSystemAttributeName as S;
    let mut all = Vec::new();
    loop {
        let out = sqs
            .receive_message()
            .queue_url(url)
            .max_number_of_messages(10)
            .message_system_attribute_names(S::All)
            .message_attribute_names("All")
            .visibility_timeout(60)
            .wait_time_seconds(0)
            .send()
            .await
            .expect("receive from moto");
        let msgs = out.messages.unwrap_or_default();
        if msgs.is_empty() {
            break;
        }
        for m in msgs {
            let sys = m.attributes.unwrap_or_default();
            all.push(Received {
                body: m.body.unwrap_or_default(),
                group_id: sys.get(&S::MessageGroupId).cloned().unwrap_or_default(),
                dedup_id: sys
                    .get(&S::MessageDeduplicationId)
                    .cloned()
                    .unwrap_or_default(),
                attributes: m
                    .message_attributes
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(k, v)| (k, v.string_value.unwrap_or_default()))
                    .collect(),
            });
        }
    }
    all
}

/// A TCP port on 127.0.0.1 that nothing listens on.
pub fn dead_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// `sha256=<hex>` HMAC of `body` under `key`, as Jira sends it.
pub fn sign(key: &str, body: &[u8]) -> String {
    use hmac::{Hmac, Mac};
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(key.as_bytes()).unwrap();
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// Creates a link store table as `template.yaml`'s `LinksTable` has it in
/// the emulator; returns its name.
pub async fn create_links_table(conf: &aws_config::SdkConfig, name: &str) -> String {
    shared::links::testing::create_dynamo_table(conf, name).await
}
