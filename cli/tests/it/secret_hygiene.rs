//! Secret hygiene of the `relay serve` process: run briefly with canary
//! secrets (`SECRET-CANARY-<random>-…`) and `RUST_LOG=trace`, through good
//! and refused webhooks, a write to the ServiceNow sandbox, a 401 that
//! survives the credential re-read and a 400 (both dead letters, listed and
//! shown with `relay dlq`), and start-up refusals (missing secret, world-readable or
//! malformed secrets file). No canary may appear on the process's stdout or
//! stderr, in an intake error body, or in the `relay dlq` output. The scan
//! proves it can fail: the secrets file itself is found dirty.

use crate::common::{free_port, repo, ConsoleSession, Serve, BIN};
use sandbox::canary::{new_base, Scanner};
use sandbox::faults::{Fault, Match};
use sandbox::servicenow_server::{ServiceNowServer, DEFAULT_USER};
use serde_json::json;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

fn write_secrets(path: &Path, text: &str, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn secrets(c: &str, sn_password: &str) -> String {
    format!(
        "secrets:\n  relay/console:\n    password: {c}-console-password\n  relay/webhook:\n    token: {c}-webhook-token\n    hmac: {c}-hmac-key\n  relay/servicenow:\n    username: {DEFAULT_USER}\n    password: {sn_password}\n  relay/jira:\n    email: relay@example.com\n    api_token: {c}-jira-api-token\n"
    )
}

fn relay(args: &[&str]) -> String {
    let out = Command::new(BIN).args(args).output().unwrap();
    format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

async fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "timed out: {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn created() -> serde_json::Value {
    json!({"webhookEvent": "jira:issue_created", "issue_event_type_name": "issue_created",
        "user": {"accountId": "712020:hygiene", "displayName": "Hygiene"},
        "issue": {"id": "61001", "key": "HYG-1",
            "fields": {"summary": "canary run", "priority": {"name": "Medium"}}}})
}

fn status_done() -> serde_json::Value {
    json!({"webhookEvent": "jira:issue_updated", "issue_event_type_name": "issue_generic",
        "user": {"accountId": "712020:hygiene"},
        "issue": {"id": "61001", "key": "HYG-1", "fields": {"summary": "canary run",
            "priority": {"name": "Medium"}, "status": {"name": "Done"}}},
        "changelog": {"items": [{"field": "status", "fieldtype": "jira",
            "fromString": "To Do", "toString": "Done"}]}})
}

fn commented(id: &str) -> serde_json::Value {
    json!({"webhookEvent": "comment_created",
        "issue": {"id": "61001", "key": "HYG-1", "fields": {"summary": "canary run"}},
        "comment": {"id": id, "body": "a comment",
            "author": {"accountId": "712020:hygiene", "displayName": "Hygiene"}}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_serve_never_prints_a_secret() {
    let c = new_base();
    let scanner = Scanner::new(&c);
    let sn = ServiceNowServer::start().await;
    let pw = format!("{c}-sn-password");
    sn.set_basic(DEFAULT_USER, &pw);
    let dir = tempfile::tempdir().unwrap();
    let config = std::fs::read_to_string(repo().join("examples/jira-to-servicenow.yaml"))
        .unwrap()
        .replace("https://example.service-now.com", &sn.base_url());
    std::fs::write(dir.path().join("relay.yaml"), &config).unwrap();
    let secrets_path = dir.path().join("secrets.yaml");
    write_secrets(&secrets_path, &secrets(&c, &pw), 0o600);
    // The scan can fail: the secrets file is dirty by construction.
    assert_eq!(
        scanner.find(&std::fs::read_to_string(&secrets_path).unwrap()),
        Some("plain")
    );

    let console = format!("127.0.0.1:{}", free_port());
    let mut serve = Serve::spawn_logged(
        dir.path(),
        free_port(),
        &[
            "--workers",
            "1",
            "--max-receives",
            "2",
            "--console",
            &console,
        ],
        "trace",
    );
    serve.ready().await;
    let client = reqwest::Client::new();
    let mut bodies = Vec::new();
    let token = format!("{c}-webhook-token");
    let base = serve.base.clone();
    let mut send = async |path: String, body: serde_json::Value, delivery: &str, ct: &str| {
        let res = client
            .post(format!("{base}{path}"))
            .header("content-type", ct)
            .header("x-atlassian-webhook-identifier", delivery)
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        let status = res.status().as_u16();
        bodies.push(res.text().await.unwrap());
        status
    };
    let hook = format!("/webhooks/jira?token={token}");
    let json_ct = "application/json";
    assert_eq!(send(hook.clone(), created(), "s-1", json_ct).await, 202);
    for (path, ct, expected) in [
        (format!("/webhooks/jira?token={token}-wrong"), json_ct, 401),
        (format!("/webhooks/nope?token={token}"), json_ct, 404),
        (hook.clone(), "text/plain", 415),
        (format!("/hooks?token={token}"), json_ct, 404),
    ] {
        assert_eq!(send(path, created(), "s-x", ct).await, expected);
    }
    wait_for("the incident", || !sn.records("incident").is_empty()).await;

    // ServiceNow's password changes but the file does not: 401, the
    // credentials re-read (rate-limited), still 401: retried, then dead.
    sn.set_basic(DEFAULT_USER, &format!("{c}-sn-password-2"));
    assert_eq!(send(hook.clone(), status_done(), "s-2", json_ct).await, 202);
    let data = dir.path().join("data");
    let data_s = data.to_str().unwrap().to_owned();
    let mut listing = String::new();
    wait_for("the 401 dead letter", || {
        listing = relay(&["dlq", "list", "--data-dir", &data_s]);
        listing.contains("target_unauthorized")
    })
    .await;
    sn.set_basic(DEFAULT_USER, &pw);

    // A dead letter: ServiceNow refuses the comment.
    sn.faults().push(
        Match::method_path(http::Method::PATCH, "/api/now/table/incident/"),
        Fault::status(400),
        1,
    );
    assert_eq!(
        send(hook.clone(), commented("71001"), "s-3", json_ct).await,
        202
    );
    wait_for("a dead letter", || {
        listing = relay(&["dlq", "list", "--data-dir", &data_s]);
        listing.contains("target_rejected")
    })
    .await;
    let id = listing
        .lines()
        .find(|l| l.contains("target_rejected"))
        .and_then(|l| l.split_whitespace().next())
        .unwrap()
        .to_owned();
    let mut shown = relay(&["dlq", "show", &id, "--data-dir", &data_s]);
    for line in listing.lines() {
        if let Some(other) = line.split_whitespace().next() {
            shown.push_str(&relay(&["dlq", "show", other, "--data-dir", &data_s]));
        }
    }
    // Every console page and /metrics, after a login with the canary password.
    let pages = console_pages(
        &format!("http://{console}"),
        &format!("{c}-console-password"),
    )
    .await;
    let output = serve.stop().await;
    assert!(output.contains("webhook accepted"), "{output}");
    assert!(output.contains("processed"), "{output}");

    // Start-up refusals.
    let mut refusals = Vec::new();
    let start = |dir: &Path| {
        let out = Command::new(BIN)
            .args(["serve", "--config"])
            .arg(dir.join("relay.yaml"))
            .arg("--secrets")
            .arg(dir.join("secrets.yaml"))
            .arg("--data-dir")
            .arg(dir.join("data2"))
            .args(["--listen", &format!("127.0.0.1:{}", free_port())])
            .env("RUST_LOG", "trace")
            .output()
            .unwrap();
        assert!(!out.status.success(), "relay serve started");
        format!(
            "{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    };
    write_secrets(&secrets_path, &secrets(&c, &pw), 0o644);
    refusals.push(start(dir.path()));
    let partial = secrets(&c, &pw).replace("  relay/jira:", "  relay/other:");
    write_secrets(&secrets_path, &partial, 0o600);
    refusals.push(start(dir.path()));
    write_secrets(
        &secrets_path,
        &format!("{c}-pasted-as-a-key: 1\nsecrets:\n  relay/webhook: {{ token: {c}-x\n"),
        0o600,
    );
    refusals.push(start(dir.path()));

    let mut leaks = Vec::new();
    for (place, text) in [
        ("relay serve stdout+stderr", &output),
        ("relay dlq list", &listing),
        ("relay dlq show", &shown),
    ]
    .into_iter()
    .chain(pages.iter().map(|(p, t)| (p.as_str(), t)))
    .chain(bodies.iter().map(|b| ("intake error body", b)))
    .chain(refusals.iter().map(|r| ("refused start-up", r)))
    {
        if let Some(form) = scanner.find(text) {
            leaks.push(format!(
                "{place} ({form}): {}",
                text.chars().take(2000).collect::<String>()
            ));
        }
    }
    assert!(
        leaks.is_empty(),
        "canary {c} leaked:\n{}",
        leaks.join("\n---\n")
    );
    eprintln!(
        "relay serve hygiene: {} lines of output at TRACE, {} bodies, {} console pages, 3 refused start-ups: no canary",
        output.lines().count(),
        bodies.len(),
        pages.len()
    );
}

/// Logs in and reads every page the console has for what is there now:
/// feed, API feed, each delivery and conversation, dead letters (each
/// shown), queue, config, a dry run, /metrics. Returns (page, text).
async fn console_pages(base: &str, password: &str) -> Vec<(String, String)> {
    let s = ConsoleSession::login(base, "admin", password)
        .await
        .unwrap();
    let mut out = Vec::new();
    for path in [
        "/feed",
        "/api/feed",
        "/dead",
        "/queue",
        "/config",
        "/metrics",
        "/conversation/HYG-1",
    ] {
        let (status, text) = s.get(path).await;
        assert_eq!(status, 200, "{path}: {text}");
        out.push((path.to_owned(), text));
    }
    let feed = out[0].1.clone();
    for id in feed
        .split("<tr data-id=\"")
        .skip(1)
        .filter_map(|r| r.split('"').next())
    {
        let path = format!("/delivery/{id}");
        out.push((path.clone(), s.get(&path).await.1));
    }
    let dead = out[2].1.clone();
    let ids: Vec<String> = dead
        .split("<a href=\"/dead/")
        .skip(1)
        .filter_map(|r| r.split('"').next())
        .map(str::to_owned)
        .collect();
    assert!(!ids.is_empty(), "no dead letters on the page: {dead}");
    for id in ids {
        let path = format!("/dead/{id}");
        let (status, text) = s.get(&path).await;
        assert_eq!(status, 200, "{path}");
        out.push((path, text));
    }
    let (status, plan) = s
        .post(
            "/config/dry-run",
            &[
                ("csrf", s.csrf.as_str()),
                ("endpoint", "jira"),
                ("payload", &created().to_string()),
            ],
        )
        .await;
    assert_eq!(status, 200);
    assert!(plan.contains("dry-run-output"), "{plan}");
    out.push(("dry run".into(), plan));
    out
}
