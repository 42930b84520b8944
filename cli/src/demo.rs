//! `relay demo`: the relay doing its job on this machine in one command.
//!
//! Starts two SANDBOXES (in-memory stand-ins for ServiceNow and Jira Cloud
//! from the `sandbox` crate; not real systems), writes a throw-away secrets
//! file and the shipped `examples/jira-to-servicenow.yaml` pointed at them,
//! starts `relay serve` in this process, posts the example webhooks from
//! `examples/demo/` (issue created, status → In Progress, a comment, an
//! attachment) to its own intake, waits until the queue is empty, and prints
//! what ServiceNow now holds. Then it stays up for the user's own payloads
//! until Ctrl-C (or returns at once with `--no-wait`).

use crate::serve::{self, ServeOptions};
use sandbox::jira_server::JiraServer;
use sandbox::servicenow_server::{self, ServiceNowServer};
use serde_json::Value;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

const CONFIG: &str = include_str!("../../examples/jira-to-servicenow.yaml");
const EVENTS: [(&str, &str); 4] = [
    (
        "1-issue-created.json",
        include_str!("../../examples/demo/1-issue-created.json"),
    ),
    (
        "2-status-in-progress.json",
        include_str!("../../examples/demo/2-status-in-progress.json"),
    ),
    (
        "3-comment-created.json",
        include_str!("../../examples/demo/3-comment-created.json"),
    ),
    (
        "4-attachment-created.json",
        include_str!("../../examples/demo/4-attachment-created.json"),
    ),
];
const LOG_FILE: &[u8] = include_bytes!("../../examples/demo/vpn-client.log");

/// What the demo found in ServiceNow (for the caller and the tests).
#[derive(Debug, Default)]
pub struct DemoReport {
    pub incident: Option<serde_json::Map<String, Value>>,
    pub comments: Vec<String>,
    pub attachments: Vec<(String, String, usize)>,
    pub accepted: usize,
    /// The console's URL and the demo's admin password.
    pub console: Option<(String, String)>,
}

fn write_private(path: &Path, text: &str) -> Result<(), String> {
    std::fs::write(path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
            .map_err(|e| format!("cannot chmod {}: {e}", path.display()))?;
    }
    Ok(())
}

pub async fn run(
    listen: SocketAddr,
    console: SocketAddr,
    data_dir: Option<PathBuf>,
    wait: bool,
) -> Result<DemoReport, String> {
    let dir = data_dir.unwrap_or_else(|| {
        std::env::temp_dir().join(format!("jira-relay-demo-{}", std::process::id()))
    });
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;

    println!("Starting two SANDBOXES (in-memory stand-ins, not real systems):");
    let sn = ServiceNowServer::start().await;
    let jira = JiraServer::start().await;
    jira.set_contract_check(false);
    println!("  ServiceNow sandbox  {}", sn.base_url());
    println!("  Jira Cloud sandbox  {}", jira.base_url());

    let token = shared::support::random::hex(24);
    let console_password = shared::support::random::hex(12);
    let secrets = format!(
        "# Throw-away secrets for this demo run only.\nsecrets:\n  relay/console:\n    username: admin\n    password: {console_password}\n  relay/webhook:\n    token: {token}\n    hmac: {hmac}\n  relay/servicenow:\n    username: {user}\n    password: {pass}\n  relay/jira:\n    email: {email}\n    api_token: {api}\n",
        hmac = shared::support::random::hex(24),
        user = servicenow_server::DEFAULT_USER,
        pass = servicenow_server::DEFAULT_PASSWORD,
        email = sandbox::jira_server::DEFAULT_EMAIL,
        api = sandbox::jira_server::DEFAULT_API_TOKEN,
    );
    let secrets_file = dir.join("secrets.yaml");
    write_private(&secrets_file, &secrets)?;
    let token_file = dir.join("demo-token");
    write_private(&token_file, &token)?;
    let config = CONFIG
        .replace("https://example.service-now.com", &sn.base_url())
        .replace("https://example.atlassian.net", &jira.base_url());
    let config_file = dir.join("relay.yaml");
    std::fs::write(&config_file, config).map_err(|e| e.to_string())?;

    let mut opts = ServeOptions::new(config_file.clone(), listen, dir.join("data"));
    opts.secrets = Some(secrets_file);
    opts.console = Some(console);
    let running = match serve::start(&opts).await {
        Ok(r) => r,
        Err(e) if e.starts_with("cannot listen") => {
            println!("  ({e}; using free ports instead)");
            opts.listen = SocketAddr::from(([127, 0, 0, 1], 0));
            opts.console = Some(SocketAddr::from(([127, 0, 0, 1], 0)));
            serve::start(&opts).await?
        }
        Err(e) => return Err(e),
    };
    println!("\n{}", running.banner());
    let base = format!("http://{}", running.addr);

    // The attachment lives in the Jira sandbox; the webhook points at it.
    let file_url = jira.add_file("vpn-client.log", "text/plain", LOG_FILE.to_vec());
    let client = reqwest::Client::new();
    let mut report = DemoReport::default();
    println!("Posting the example webhooks from examples/demo/ to the relay:");
    for (i, (name, text)) in EVENTS.iter().enumerate() {
        let mut payload: Value = serde_json::from_str(text).map_err(|e| format!("{name}: {e}"))?;
        if payload["webhookEvent"] == "attachment_created" {
            payload["attachment"]["content"] = Value::String(file_url.clone());
            payload["attachment"]["size"] = Value::from(LOG_FILE.len());
        }
        let resp = client
            .post(format!("{base}/webhooks/jira?token={token}"))
            .header("content-type", "application/json")
            .header(
                "x-atlassian-webhook-identifier",
                format!("demo-{}-{i}", std::process::id()),
            )
            .body(payload.to_string())
            .send()
            .await
            .map_err(|e| format!("cannot reach the relay: {e}"))?;
        let status = resp.status().as_u16();
        report.accepted += usize::from(status == 202);
        println!("  {name:<28} → {status}");
    }

    // Wait until the worker has handled everything.
    let started = std::time::Instant::now();
    loop {
        let s = running.queue.stats().await.map_err(|e| e.to_string())?;
        if s.visible + s.in_flight + s.delayed == 0 {
            break;
        }
        if started.elapsed() > Duration::from_secs(60) {
            println!(
                "  (still {} message(s) queued after 60 s)",
                s.visible + s.in_flight + s.delayed
            );
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    report.incident = sn.find("incident", "correlation_id", "DEMO-1");
    println!("\nWhat ServiceNow (sandbox) now holds:");
    match &report.incident {
        None => println!("  no incident for DEMO-1 — see the log lines above for the reason"),
        Some(inc) => {
            let f = |k: &str| match inc.get(k) {
                Some(Value::String(s)) => s.clone(),
                Some(Value::Object(o)) => o
                    .get("value")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_owned(),
                _ => String::new(),
            };
            println!(
                "  incident {}  (correlation_id {}, {})",
                f("number"),
                f("correlation_id"),
                f("correlation_display")
            );
            println!("    short_description  {}", f("short_description"));
            println!("    impact / urgency   {} / {}", f("impact"), f("urgency"));
            println!(
                "    state              {} ({})",
                f("state"),
                state_name(&f("state"))
            );
            let sys_id = f("sys_id");
            for j in sn.journal("incident", &sys_id) {
                println!("    {:<18} {}", j.field, j.value);
                report.comments.push(j.value);
            }
            for a in sn
                .attachments()
                .into_iter()
                .filter(|a| a.table_sys_id == sys_id)
            {
                println!(
                    "    attachment         {} ({}, {} bytes)",
                    a.file_name,
                    a.content_type,
                    a.bytes.len()
                );
                report
                    .attachments
                    .push((a.file_name, a.content_type, a.bytes.len()));
            }
        }
    }
    let dead = running
        .queue
        .dead_list(10)
        .await
        .map_err(|e| e.to_string())?;
    for d in &dead {
        println!("  dead letter {}: {}", d.id, d.reason);
    }

    if let Ok(a) = &running.console {
        println!(
            "\nOperator console: http://{a}/  user admin, password {console_password}  (demo credential; in {})",
            dir.join("secrets.yaml").display()
        );
        report.console = Some((format!("http://{a}"), console_password.clone()));
    }
    if wait {
        println!(
            "\nThe relay keeps running. Post your own payloads, e.g.:\n  curl -X POST \"{base}/webhooks/jira?token=$(cat {})\" \\\n       -H 'Content-Type: application/json' --data-binary @examples/demo/1-issue-created.json\nOperator view: relay queue stats --data-dir {}   ·   Ctrl-C to stop.",
            token_file.display(),
            opts.data_dir.display()
        );
        serve::signal().await;
        println!("\nStopping…");
    }
    running.shutdown(serve::DRAIN).await;
    Ok(report)
}

fn state_name(code: &str) -> &'static str {
    match code {
        "1" => "New",
        "2" => "In Progress",
        "3" => "On Hold",
        "6" => "Resolved",
        "7" => "Closed",
        "8" => "Canceled",
        _ => "?",
    }
}
