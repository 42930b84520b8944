//! The reconciliation sweep in process (issue #9): what the end-to-end test
//! of `relay reconcile` (cli/tests/reconcile.rs) cannot force — a sweep that
//! fails part-way and resumes, two sweeps at once, a webhook and a sweep for
//! the same change — against the Jira and ServiceNow contract servers, with
//! the in-memory queue and watermark store.

use relay_tests::faults::{Fault, Match};
use relay_tests::jira_server::{JiraServer, DEFAULT_API_TOKEN, DEFAULT_EMAIL};
use relay_tests::servicenow_server::{ServiceNowServer, DEFAULT_PASSWORD, DEFAULT_USER};
use serde_json::{json, Value};
use shared::config::Config;
use shared::intake::envelope::Envelope;
use shared::outbound::executor::Connectors;
use shared::outbound::rest::http_client;
use shared::outbound::{Budget, ConnectorSettings};
use shared::queue::{MemoryQueue, OutgoingMessage, Queue};
use shared::reconcile::{
    DriftKind, MemoryStore, Reconciler, SweepError, SweepOptions, WatermarkStore,
};
use shared::secrets::{env_name, LocalSecretStore};
use shared::support::clock::SystemClock;
use std::sync::Arc;
use std::time::Duration;

struct Bed {
    sn: ServiceNowServer,
    jira: JiraServer,
    queue: Arc<MemoryQueue>,
    store: Arc<MemoryStore>,
    reconciler: Reconciler,
    config: Arc<Config>,
}

async fn bed(page_size: u32) -> Bed {
    bed_with(page_size, |y| y).await
}

async fn bed_with(page_size: u32, edit: impl Fn(String) -> String) -> Bed {
    let (sn, jira) = (ServiceNowServer::start().await, JiraServer::start().await);
    let yaml = relay_tests::example_yaml("jira-to-servicenow", &sn.base_url(), &jira.base_url())
        .replace(
            "jql: project = SUP",
            &format!("jql: project = OPS\n      page_size: {page_size}"),
        );
    let config = Arc::new(Config::from_yaml(&edit(yaml), "relay.yaml", |_| None).unwrap());
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
    let connectors = Connectors::from_config(
        &config,
        http_client(),
        secrets,
        ConnectorSettings::default(),
    );
    let queue = Arc::new(MemoryQueue::new());
    let store = Arc::new(MemoryStore::new());
    let reconciler = Reconciler::new(
        config.clone(),
        connectors,
        queue.clone(),
        store.clone(),
        Arc::new(SystemClock),
    );
    Bed {
        sn,
        jira,
        queue,
        store,
        reconciler,
        config,
    }
}

fn opts(owner: &str) -> SweepOptions {
    SweepOptions {
        owner: owner.into(),
        ..SweepOptions::default()
    }
}

fn budget() -> Budget {
    Budget::from_now(Duration::from_secs(120))
}

/// Issues OPS-1 … OPS-n, none of them in ServiceNow yet.
fn seed(jira: &JiraServer, n: usize) -> Vec<String> {
    (0..n)
        .map(|i| {
            jira.seed_issue(
                "OPS",
                json!({"summary": format!("issue {i}"), "priority": {"name": "Medium"},
                       "issuetype": {"name": "Incident"}}),
            )
        })
        .collect()
}

fn enqueued_keys(q: &MemoryQueue) -> Vec<String> {
    q.messages()
        .iter()
        .map(|(_, m)| {
            Envelope::decode(&m.body)
                .unwrap()
                .source_key
                .unwrap_or_default()
        })
        .collect()
}

#[tokio::test]
async fn a_sweep_that_fails_part_way_resumes_where_it_stopped() {
    // given 7 issues missing from ServiceNow, pages of 2
    let b = bed(2).await;
    let keys = seed(&b.jira, 7);
    let search = || Match::method_path(http::Method::POST, "/search/jql");
    // and the first search is rate limited once (Retry-After: 1, waited out
    // inside the sweep's budget), then answers; the second search (and the
    // connector's retries of it) get 503: the sweep stops after one page.
    b.jira.faults().push(search(), Fault::rate_limited(1), 1);
    b.jira.faults().push(search(), Fault::Pass, 1);
    b.jira.faults().push(search(), Fault::status(503), 10);
    // when a sweep runs
    let part = b
        .reconciler
        .sweep("jira", &opts("a"), &budget())
        .await
        .unwrap();
    // then it stops after one page, keeping its progress
    assert!(!part.complete, "{part:?}");
    assert_eq!(part.scanned, 2, "{part:?}");
    let injected = b.jira.faults().injected();
    assert_eq!(injected[0].1, "429", "{injected:?}");
    assert!(
        part.stopped.as_deref().unwrap().starts_with("jira search"),
        "{part:?}"
    );
    // Per missing issue: the create, then the update that sets what only
    // the update rules map (the state).
    assert_eq!(b.queue.len(), 4, "the first page's drift is queued");
    let w = b.store.load("jira").await.unwrap();
    let p = w.progress.clone().expect("progress kept");
    assert_eq!(
        w.since, None,
        "an unfinished sweep does not move the watermark"
    );
    assert_eq!(p.scanned, 2);
    assert!(p.created_from.is_some());

    // when
    // Still down for the next run: it resumes, stops again, keeps the progress.
    let down = b
        .reconciler
        .sweep("jira", &opts("a"), &budget())
        .await
        .unwrap();
    // then it resumes, stops again, keeps the progress
    assert!(!down.complete && down.resumed, "{down:?}");
    let kept = b.store.load("jira").await.unwrap().progress.unwrap();
    assert_eq!(
        (kept.started_at, kept.from, kept.created_from, kept.scanned),
        (p.started_at, p.from, p.created_from, p.scanned),
        "the stopped run keeps where the first one got to"
    );
    b.jira.faults().clear();

    // when
    // Back: the next run continues from the last issue done and finishes.
    let rest = b
        .reconciler
        .sweep("jira", &opts("a"), &budget())
        .await
        .unwrap();
    // then the next run continues from the last issue done and finishes
    assert!(rest.complete && rest.resumed, "{rest:?}");
    assert!(
        rest.scanned >= 5,
        "the 5 issues not done yet, and those of the resume minute again: {rest:?}"
    );
    let w = b.store.load("jira").await.unwrap();
    assert_eq!(w.progress, None);
    assert_eq!(
        w.since,
        Some(p.started_at),
        "the watermark is the first run's start"
    );
    // Every issue queued exactly once (create + update): re-scanned issues
    // dedup in the queue.
    let mut got = enqueued_keys(&b.queue);
    assert_eq!(got.len(), 2 * keys.len(), "{got:?}");
    got.sort();
    got.dedup();
    let mut want = keys;
    want.sort();
    assert_eq!(got, want);
    assert!(rest.drift.iter().all(|d| d.kind == DriftKind::Missing));

    // Jira's searches were all valid requests.
    let v = b.jira.violations();
    assert!(v.is_empty(), "{v:?}");
}

#[tokio::test]
async fn two_sweeps_never_run_at_once() {
    // given someone else holding the lease
    let b = bed(50).await;
    seed(&b.jira, 1);
    assert!(b
        .store
        .try_lock("jira", "someone else", Duration::from_secs(60))
        .await
        .unwrap());
    // when a sweep starts
    match b.reconciler.sweep("jira", &opts("me"), &budget()).await {
        // then it is busy and asks Jira nothing
        Err(SweepError::Busy(e)) => assert_eq!(e, "jira"),
        other => panic!("expected busy, got {other:?}"),
    }
    assert!(b.queue.is_empty());
    assert!(
        b.jira.requests().is_empty(),
        "a busy sweep asks Jira nothing"
    );
    // when the lease is given up
    b.store.unlock("jira", "someone else").await.unwrap();
    // and a sweep runs
    let r = b
        .reconciler
        .sweep("jira", &opts("me"), &budget())
        .await
        .unwrap();
    // then it completes and gives the lease back
    assert!(r.complete);
    // The lease is given back.
    assert!(b
        .store
        .try_lock("jira", "someone else", Duration::from_secs(60))
        .await
        .unwrap());
}

#[tokio::test]
async fn a_webhook_and_a_sweep_for_the_same_change_are_one_message() {
    // given an issue whose creation webhook is queued
    let b = bed(50).await;
    let key = seed(&b.jira, 1).remove(0);
    let issue = b.jira.issue(&key).unwrap();
    // The creation webhook Jira sends, as the ingress enqueues it.
    let hook = json!({"webhookEvent": "jira:issue_created", "issue_event_type_name": "issue_created",
        "user": {"accountId": "712020:someone"},
        "issue": {"id": issue.id, "key": key, "fields": issue.fields}});
    let env: Envelope = {
        let body = hook.to_string();
        let v: Value = serde_json::from_str(&body).unwrap();
        assert!(v.is_object());
        // The same route the ingress takes: header fields read from the body.
        let meta =
            shared::intake::envelope::read_meta(shared::config::SourceKind::Jira, &body).unwrap();
        assert_eq!(
            meta.change_id.as_deref(),
            Some(&*format!("issue:{}:created", issue.id))
        );
        let mut e = Envelope::decode(
            &json!({"v": 1, "endpoint": "jira", "source": "jira", "event": meta.event,
                    "source_id": meta.source_id, "delivery_id": "b7e1-webhook",
                    "change_id": meta.change_id, "received_at": "2026-11-23T12:00:00Z",
                    "payload": v})
            .to_string(),
        )
        .unwrap();
        e.retry = 0;
        e
    };
    let receipt = b
        .queue
        .send(OutgoingMessage {
            group_id: env.group_id(),
            dedup_id: env.dedup_id(),
            body: env.encode(),
            attributes: vec![],
        })
        .await
        .unwrap();
    assert!(!receipt.duplicate);
    // when
    // The incident does not exist yet (the worker has not run): drift.
    let r = b
        .reconciler
        .sweep("jira", &opts("a"), &budget())
        .await
        .unwrap();
    // then the sweep's create is the webhook's
    assert_eq!(r.drift.len(), 1, "{r:?}");
    assert_eq!(
        r.already_queued, 1,
        "the sweep's create is the webhook's: {r:?}"
    );
    assert_eq!(
        r.enqueued, 1,
        "only the update that follows it is new: {r:?}"
    );
    assert_eq!(b.queue.len(), 2);
    // when
    // A second sweep before the worker ran: everything is already queued.
    let again = b
        .reconciler
        .sweep("jira", &opts("a"), &budget())
        .await
        .unwrap();
    // then everything is already queued
    assert_eq!((again.enqueued, again.already_queued), (0, 2), "{again:?}");
    let _ = (&b.sn, &b.config);
}

#[tokio::test]
async fn an_issue_too_large_to_queue_is_reported_and_the_sweep_goes_on() {
    // given a 4096-byte limit, a small issue and a huge one
    let b = bed_with(50, |y| {
        y.replacen(
            "version: 1",
            "version: 1\nlimits:\n  max_body_bytes: 4096",
            1,
        )
    })
    .await;
    let small = seed(&b.jira, 1).remove(0);
    let big = b.jira.seed_issue(
        "OPS",
        json!({"summary": "huge", "priority": {"name": "Medium"},
               "issuetype": {"name": "Incident"}, "environment": "x".repeat(8000)}),
    );
    // when a sweep runs
    let r = b
        .reconciler
        .sweep("jira", &opts("a"), &budget())
        .await
        .unwrap();
    // then the big one is reported too large, the small one queued
    assert!(r.complete, "{r:?}");
    assert_eq!(r.drift.len(), 2, "both are missing: {r:?}");
    assert_eq!(r.too_large, 2, "the big one's create and update: {r:?}");
    let keys = enqueued_keys(&b.queue);
    assert!(keys.iter().all(|k| *k == small), "{keys:?}");
    assert!(!keys.contains(&big));
}

/// An issue born in ServiceNow (created in Jira by the integration user) and
/// paired back (`correlation_id` on its incident): the sweep compares its
/// Jira comments with the incident's journal, not its fields (ServiceNow
/// owns them), and never reports it `missing`; one not paired yet is not
/// the sweep's to sync.
#[tokio::test]
async fn an_issue_born_in_servicenow_is_compared_by_its_pairing() {
    // given an issue paired with an incident born in ServiceNow, and one unpaired
    let b = bed(50).await;
    let integration = json!({"accountId": "557058:relay-integration-user"});
    let paired = b.jira.seed_issue(
        "OPS",
        json!({"summary": "VPN drops", "priority": {"name": "Medium"},
               "issuetype": {"name": "Incident"}, "creator": integration}),
    );
    let unpaired = b.jira.seed_issue(
        "OPS",
        json!({"summary": "Not paired yet", "priority": {"name": "Medium"},
               "issuetype": {"name": "Incident"}, "creator": integration}),
    );
    // The incident it came from, its key written back; its own title.
    let r = reqwest::Client::new()
        .post(format!("{}/api/now/table/incident", b.sn.base_url()))
        .basic_auth(DEFAULT_USER, Some(DEFAULT_PASSWORD))
        .json(
            &json!({"short_description": "VPN drops every hour (from the service desk)",
                      "correlation_id": paired, "impact": "2", "urgency": "2"}),
        )
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    // and a comment made in Jira whose webhook was lost.
    let r = reqwest::Client::new()
        .post(format!(
            "{}/rest/api/3/issue/{paired}/comment",
            b.jira.base_url()
        ))
        .basic_auth(DEFAULT_EMAIL, Some(DEFAULT_API_TOKEN))
        .json(
            &json!({"body": {"type": "doc", "version": 1, "content": [{"type": "paragraph",
            "content": [{"type": "text", "text": "Seen from the Jira side"}]}]}}),
        )
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    // when a sweep runs
    let report = b
        .reconciler
        .sweep("jira", &opts("a"), &budget())
        .await
        .unwrap();
    // then only the paired one is compared: its comment drift
    assert_eq!(report.drift.len(), 1, "{report:?}");
    assert_eq!(report.drift[0].key, paired);
    assert!(
        matches!(report.drift[0].kind, DriftKind::Comment { .. }),
        "{report:?}"
    );
    assert_eq!(
        report.not_synced, 1,
        "{unpaired} is not ours yet: {report:?}"
    );
    assert_eq!(enqueued_keys(&b.queue), vec![paired]);
    let _ = &b.config;
}
