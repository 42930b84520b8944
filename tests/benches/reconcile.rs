//! The cost of a reconciliation sweep (issue #9), against the Jira and
//! ServiceNow contract servers on 127.0.0.1: Jira requests and ServiceNow
//! requests per 1 000 issues scanned, and wall time, for a window where
//! most issues are level and some are not.
//!
//! `cargo bench -p relay-tests --bench reconcile` (RELAY_BENCH_ISSUES,
//! default 1000). Issue i: every 10th is missing in ServiceNow, every 7th
//! has a summary the incident does not have yet, every 5th has a comment
//! (one in three of those not yet in the incident's journal). Each page size
//! is swept as a dry run (nothing is written), then for real (envelopes into
//! an in-memory queue; no worker runs, so the drift stays); then again with
//! 50 ms added to every ServiceNow answer (the sweep's calls are sequential:
//! wall time grows with requests × latency).

use sandbox::jira_server::{JiraServer, DEFAULT_API_TOKEN, DEFAULT_EMAIL};
use sandbox::servicenow_server::{ServiceNowServer, DEFAULT_PASSWORD, DEFAULT_USER};
use serde_json::json;
use shared::config::Config;
use shared::outbound::executor::Connectors;
use shared::outbound::rest::http_client;
use shared::outbound::{Budget, ConnectorSettings};
use shared::queue::MemoryQueue;
use shared::reconcile::{MemoryStore, Reconciler, SweepOptions};
use shared::secrets::{env_name, LocalSecretStore};
use shared::support::clock::SystemClock;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn config(sn: &str, jira: &str, page: u32) -> Arc<Config> {
    let yaml = relay_tests::example_yaml("jira-to-servicenow", sn, jira).replace(
        "jql: project = SUP",
        &format!("jql: project = BEN\n      page_size: {page}"),
    );
    Arc::new(Config::from_yaml(&yaml, "relay.yaml", |_| None).unwrap())
}

#[tokio::main]
async fn main() {
    let n: usize = std::env::var("RELAY_BENCH_ISSUES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let (sn, jira) = (ServiceNowServer::start().await, JiraServer::start().await);
    jira.set_contract_check(false);
    let http = reqwest::Client::new();
    let seed_start = Instant::now();
    for i in 0..n {
        let summary = format!("bench issue {i}");
        let key = jira.seed_issue(
            "BEN",
            json!({"summary": summary, "priority": {"name": "Medium"},
                   "issuetype": {"name": "Incident"}}),
        );
        if i % 5 == 0 {
            let r = http
                .post(format!("{}/rest/api/3/issue/{key}/comment", jira.base_url()))
                .basic_auth(DEFAULT_EMAIL, Some(DEFAULT_API_TOKEN))
                .json(&json!({"body": {"type": "doc", "version": 1, "content": [
                    {"type": "paragraph", "content": [{"type": "text", "text": format!("note {i}")}]}]}}))
                .send()
                .await
                .unwrap();
            assert!(r.status().is_success());
        }
        if i % 10 == 0 {
            continue; // missing in ServiceNow
        }
        let shown = if i % 7 == 0 {
            "an older summary".to_owned()
        } else {
            summary.clone()
        };
        let sys_id = sn.seed(
            "incident",
            json!({"short_description": format!("[{key}] {shown}"), "correlation_id": key,
                   "impact": "2", "urgency": "2", "state": "1"}),
        );
        if i % 5 == 0 && i % 3 != 0 {
            // The comment is already in the journal.
            let r = http
                .patch(format!("{}/api/now/table/incident/{sys_id}", sn.base_url()))
                .basic_auth(DEFAULT_USER, Some(DEFAULT_PASSWORD))
                .json(&json!({"comments": format!("Relay Integration (Jira): note {i}")}))
                .send()
                .await
                .unwrap();
            assert!(r.status().is_success());
        }
    }
    println!(
        "seeded {n} issues in {:.1} s (load average {})",
        seed_start.elapsed().as_secs_f64(),
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .split(' ')
            .next()
            .unwrap_or("?")
    );
    let secrets = Arc::new(LocalSecretStore::with_env([
        (
            env_name("relay/servicenow"),
            json!({"username": DEFAULT_USER, "password": DEFAULT_PASSWORD}).to_string(),
        ),
        (
            env_name("relay/jira"),
            json!({"email": DEFAULT_EMAIL, "api_token": DEFAULT_API_TOKEN}).to_string(),
        ),
    ]));
    println!("| page size | ServiceNow latency | run | issues | drift | enqueued | Jira requests | ServiceNow requests | per 1 000 issues (Jira / ServiceNow) | wall time |");
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for (page, latency_ms) in [(50u32, 0u64), (100, 0), (50, 50)] {
        sn.set_latency(Duration::from_millis(latency_ms));
        let cfg = config(&sn.base_url(), &jira.base_url(), page);
        let connectors = Connectors::from_config(
            &cfg,
            http_client(),
            secrets.clone(),
            ConnectorSettings::default(),
        );
        let queue = Arc::new(MemoryQueue::new());
        let r = Reconciler::new(
            cfg.clone(),
            connectors,
            queue.clone(),
            Arc::new(MemoryStore::new()),
            Arc::new(SystemClock),
        );
        for (run, dry) in [("dry run", true), ("sweep", false)] {
            let opts = SweepOptions {
                dry_run: dry,
                owner: "bench".into(),
                ..SweepOptions::default()
            };
            let t = Instant::now();
            let rep = r
                .sweep("jira", &opts, &Budget::from_now(Duration::from_secs(600)))
                .await
                .unwrap();
            let wall = t.elapsed();
            assert!(rep.complete, "{:?}", rep.stopped);
            let per = |x: u64| x as f64 * 1000.0 / rep.scanned.max(1) as f64;
            println!(
                "| {page} | {latency_ms} ms | {run} | {} | {} | {} | {} | {} | {:.0} / {:.0} | {:.0} ms |",
                rep.scanned,
                rep.drift.len(),
                rep.enqueued,
                rep.jira_requests,
                rep.target_requests,
                per(rep.jira_requests),
                per(rep.target_requests),
                wall.as_secs_f64() * 1000.0
            );
        }
    }
}
