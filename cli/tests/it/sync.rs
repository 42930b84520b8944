//! `relay sync` connects existing issues: 1 000 issues in the Jira sandbox,
//! 100 already paired both ways, 50 with an incident that the issue does not
//! know of. The sync is killed part way, run again (it resumes), and
//! `relay serve` applies what it queued: one incident per issue, no
//! duplicate, every issue paired.

use crate::common::{chmod, drained, free_port, shipped, Serve, BIN};
use sandbox::jira_server::{JiraServer, DEFAULT_API_TOKEN, DEFAULT_EMAIL};
use sandbox::servicenow_server::{ServiceNowServer, DEFAULT_PASSWORD, DEFAULT_USER};
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const ISSUES: usize = 1000;
const PAIRED: usize = 100;
const HALF_PAIRED: usize = 50;

fn setup(dir: &Path, jira: &str, sn: &str) {
    let yaml = shipped(jira, sn);
    std::fs::write(dir.join("relay.yaml"), yaml).unwrap();
    let secrets = dir.join("secrets.yaml");
    std::fs::write(
        &secrets,
        format!(
            "secrets:\n  relay/jira: {{ email: {DEFAULT_EMAIL}, api_token: {DEFAULT_API_TOKEN} }}\n  relay/servicenow: {{ username: {DEFAULT_USER}, password: {DEFAULT_PASSWORD} }}\n  relay/webhook: {{ token: t0k }}\n  relay/servicenow-sender: {{ username: s, password: p }}\n"
        ),
    )
    .unwrap();
    chmod(&secrets, 0o600);
}

fn sync_cmd(dir: &Path, extra: &[&str]) -> Command {
    let mut c = Command::new(BIN);
    c.args(["sync", "--config"])
        .arg(dir.join("relay.yaml"))
        .arg("--secrets")
        .arg(dir.join("secrets.yaml"))
        .arg("--data-dir")
        .arg(dir.join("data"))
        .args(["--jql", "project = SUP"])
        .args(extra)
        .env_remove("RUST_LOG");
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_existing_issues_are_connected_once_across_a_kill() {
    // given 1 000 issues, 100 paired both ways, 50 whose incident they do not know
    let jira = JiraServer::start().await;
    let sn = ServiceNowServer::start().await;
    jira.add_project("SUP", "Support");
    let mut numbers = BTreeMap::new();
    for i in 1..=ISSUES {
        let key = format!("SUP-{i}");
        let mut fields = json!({"summary": format!("Existing issue {i}"),
            "issuetype": {"name": "Incident"}, "priority": {"name": "Medium"}});
        if i <= PAIRED + HALF_PAIRED {
            let sys_id = sn.seed(
                "incident",
                json!({"short_description": format!("[{key}] Existing issue {i}"),
                       "correlation_id": key, "impact": "2", "urgency": "2"}),
            );
            let inc = sn.find("incident", "sys_id", &sys_id).unwrap();
            let number = inc["number"].as_str().unwrap().to_owned();
            if i <= PAIRED {
                fields["customfield_10050"] = json!(number);
            }
            numbers.insert(key.clone(), number);
        }
        assert_eq!(jira.seed_issue("SUP", fields), key);
    }
    let dir = tempfile::tempdir().unwrap();
    setup(dir.path(), &jira.base_url(), &sn.base_url());

    // when a dry run looks first
    let out = sync_cmd(dir.path(), &["--dry-run", "--rate", "5000"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    // then it says what it would do, and does nothing
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains(&format!(
            "{ISSUES} issues scanned (20 pages), {} to create, {HALF_PAIRED} to pair",
            ISSUES - PAIRED - HALF_PAIRED
        )),
        "{text}"
    );
    assert_eq!(sn.records("incident").len(), PAIRED + HALF_PAIRED);

    // when the sync runs (at 250 issues a second) and is killed part way
    let started = Instant::now();
    let mut child = sync_cmd(dir.path(), &["--rate", "250"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut progress = Vec::new();
    for line in BufReader::new(child.stderr.take().unwrap()).lines() {
        let line = line.unwrap();
        let done = line.starts_with("sync: 300 issues scanned");
        progress.push(line);
        if done {
            break;
        }
    }
    child.kill().unwrap();
    child.wait().unwrap();
    // then it showed its progress page by page
    assert!(progress.len() >= 6, "{progress:?}");
    assert!(
        progress[0].starts_with("sync: 50 issues scanned (1 pages)"),
        "{progress:?}"
    );

    // when it is run again
    let out = sync_cmd(dir.path(), &["--rate", "250"]).output().unwrap();
    let sync_secs = started.elapsed().as_secs_f64();
    let text = String::from_utf8_lossy(&out.stdout);
    // then it resumes after the issues it had done, and finishes
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("done (resumed an earlier run)"), "{text}");
    let scanned: usize = text
        .split("sync: ")
        .nth(1)
        .and_then(|t| t.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap();
    // Progress is kept after each page: the kill came after 300 were
    // shown, so at least the first 250 were kept.
    assert!(
        scanned <= ISSUES - 250,
        "the resumed run compared {scanned} issues, not only those after the kill: {text}"
    );

    // when relay serve applies what the sync queued
    let applied = Instant::now();
    let port = free_port();
    let mut serve = Serve::spawn(dir.path(), port);
    serve.ready().await;
    drained(&dir.path().join("data"), Duration::from_secs(300)).await;
    let apply_secs = applied.elapsed().as_secs_f64();
    serve.stop().await;

    // then every issue has exactly one incident, and knows it
    let incidents = sn.records("incident");
    let mut by_key: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for inc in &incidents {
        by_key
            .entry(inc["correlation_id"].as_str().unwrap_or("").to_owned())
            .or_default()
            .push(inc["number"].as_str().unwrap().to_owned());
    }
    let twice: Vec<_> = by_key.iter().filter(|(_, v)| v.len() > 1).collect();
    assert!(twice.is_empty(), "duplicates: {twice:?}");
    assert_eq!(incidents.len(), ISSUES, "one incident per issue");
    let mut unpaired = BTreeSet::new();
    for issue in jira.issues() {
        let held = issue
            .fields
            .get("customfield_10050")
            .and_then(|v| v.as_str());
        if held != by_key.get(&issue.key).map(|v| v[0].as_str()) {
            unpaired.insert(issue.key.clone());
        }
        if let Some(n) = numbers.get(&issue.key) {
            assert_eq!(
                held,
                Some(n.as_str()),
                "{}: kept its own incident",
                issue.key
            );
        }
    }
    assert!(unpaired.is_empty(), "not paired back: {unpaired:?}");
    assert!(jira.violations().is_empty(), "{:?}", jira.violations());
    eprintln!(
        "sync figures: {ISSUES} issues ({PAIRED} paired, {HALF_PAIRED} half-paired): scan + queue {sync_secs:.1} s at --rate 250 (with one kill), applied by relay serve in {apply_secs:.1} s"
    );
}
