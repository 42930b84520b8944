//! Ingress handler cost: authenticate + read body + parse + envelope + encode,
//! through the real router (`oneshot`), for payloads of 5 KB, 100 KB and 1 MB
//! made from a real Jira fixture whose description is padded with text.
//! The queue is the in-memory adapter (its cost is a mutex and a push), so the
//! figure is the relay's own work per webhook, not SQS's latency.
//! Needs `../shared/fixtures` (or `RELAY_FIXTURES_DIR`).

use axum::body::Body;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use http::Request;
use shared::config::Config;
use shared::intake::router::{app, IngressState};
use shared::queue::MemoryQueue;
use shared::secrets::LocalSecretStore;
use shared::support::clock::SystemClock;
use std::path::PathBuf;
use std::sync::Arc;
use tower::ServiceExt;

const TOKEN: &str = "bench-token-0123456789";
const HMAC: &str = "bench-hmac-key-0123456789";

fn fixture() -> Option<serde_json::Value> {
    let dir = std::env::var_os("RELAY_FIXTURES_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/fixtures"));
    let path = dir.join("jira-webhooks/mattermost__jira-issue-created_cloud.json");
    match std::fs::read(&path) {
        Ok(b) => Some(serde_json::from_slice(&b).expect("fixture is JSON")),
        Err(_) => {
            eprintln!("*** SKIPPED: fixture {} not found ***", path.display());
            None
        }
    }
}

/// The fixture with its description padded so the body is `size` bytes.
fn padded(base: &serde_json::Value, size: usize) -> Vec<u8> {
    let mut v = base.clone();
    v["issue"]["fields"]["description"] = serde_json::Value::String(String::new());
    let bare = serde_json::to_vec(&v).unwrap().len();
    let words = "Lorem ipsum dolor sit amet, consectetur adipiscing elit. ";
    let pad: String = words
        .chars()
        .cycle()
        .take(size.saturating_sub(bare))
        .collect();
    v["issue"]["fields"]["description"] = serde_json::Value::String(pad);
    let out = serde_json::to_vec(&v).unwrap();
    assert_eq!(out.len(), size.max(bare));
    out
}

fn bench(c: &mut Criterion) {
    let Some(base) = fixture() else { return };
    let yaml = "version: 1\nlimits:\n  max_body_bytes: 1040000\nendpoints:\n  - name: jira\n    kind: jira\n    stage: prod\n    auth:\n      token: relay/webhook#token\n  - name: signed\n    kind: jira\n    stage: prod\n    auth:\n      hmac: relay/webhook#hmac\n";
    let config = Config::from_yaml(yaml, "bench.yaml", |_| None).unwrap();
    let secrets = LocalSecretStore::with_env([(
        "RELAY_SECRET_RELAY_WEBHOOK".to_owned(),
        serde_json::json!({"token": TOKEN, "hmac": HMAC}).to_string(),
    )]);
    let queue = Arc::new(MemoryQueue::new());
    let router = app(IngressState {
        config: Arc::new(config),
        secrets: Arc::new(secrets),
        queue: queue.clone(),
        clock: Arc::new(SystemClock),
    });
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();

    let mut group = c.benchmark_group("ingress_handler");
    for (label, size) in [("5KB", 5_000), ("100KB", 100_000), ("1MB", 1_000_000)] {
        let body = bytes::Bytes::from(padded(&base, size));
        let signature = {
            use hmac::{Hmac, Mac};
            let mut mac = Hmac::<sha2::Sha256>::new_from_slice(HMAC.as_bytes()).unwrap();
            mac.update(&body);
            format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
        };
        group.throughput(Throughput::Bytes(body.len() as u64));
        group.bench_with_input(BenchmarkId::new("token", label), &body, |b, body| {
            b.iter(|| {
                let req = Request::post(format!("/webhooks/jira?token={TOKEN}"))
                    .header("content-type", "application/json")
                    .header("x-atlassian-webhook-identifier", "bench-delivery")
                    .body(Body::from(body.clone()))
                    .unwrap();
                let res = rt.block_on(router.clone().oneshot(req)).unwrap();
                assert_eq!(res.status(), 202);
                // Sent and gone, as with SQS: a queue that kept every message
                // would make each iteration fault in fresh pages.
                queue.clear();
            })
        });
        group.bench_with_input(BenchmarkId::new("hmac", label), &body, |b, body| {
            b.iter(|| {
                let req = Request::post("/webhooks/signed")
                    .header("content-type", "application/json")
                    .header("x-hub-signature", &signature)
                    .header("x-atlassian-webhook-identifier", "bench-delivery")
                    .body(Body::from(body.clone()))
                    .unwrap();
                let res = rt.block_on(router.clone().oneshot(req)).unwrap();
                assert_eq!(res.status(), 202);
                // Sent and gone, as with SQS: a queue that kept every message
                // would make each iteration fault in fresh pages.
                queue.clear();
            })
        });
    }
    group.finish();

    // The worker's first step on each message: the envelope the ingress
    // queued, decoded (header fields + the payload kept raw).
    let mut group = c.benchmark_group("envelope_decode");
    for (label, size) in [("5KB", 5_000), ("100KB", 100_000), ("1MB", 1_000_000)] {
        let req = Request::post(format!("/webhooks/jira?token={TOKEN}"))
            .header("content-type", "application/json")
            .body(Body::from(padded(&base, size)))
            .unwrap();
        let res = rt.block_on(router.clone().oneshot(req)).unwrap();
        assert_eq!(res.status(), 202);
        let (_, message) = queue.messages().pop().expect("the webhook was queued");
        queue.clear();
        group.throughput(Throughput::Bytes(message.body.len() as u64));
        group.bench_with_input(
            BenchmarkId::from_parameter(label),
            &message.body,
            |b, body| b.iter(|| shared::intake::envelope::Envelope::decode(body).unwrap()),
        );
    }
    group.finish();

    // Criterion reports means of batches; the goal is a per-request p99, so
    // time single warm requests too (token auth, as the Lambda sees them).
    for (label, size) in [("5KB", 5_000), ("100KB", 100_000), ("1MB", 1_000_000)] {
        let body = bytes::Bytes::from(padded(&base, size));
        let runs = if size >= 1_000_000 { 300 } else { 2_000 };
        let mut times: Vec<f64> = (0..runs + 50)
            .map(|_| {
                let req = Request::post(format!("/webhooks/jira?token={TOKEN}"))
                    .header("content-type", "application/json")
                    .header("x-atlassian-webhook-identifier", "bench-delivery")
                    .body(Body::from(body.clone()))
                    .unwrap();
                let t = std::time::Instant::now();
                let res = rt.block_on(router.clone().oneshot(req)).unwrap();
                let dt = t.elapsed().as_secs_f64() * 1e6;
                assert_eq!(res.status(), 202);
                queue.clear();
                dt
            })
            .skip(50)
            .collect();
        times.sort_by(f64::total_cmp);
        let q = |p: f64| times[((times.len() as f64 * p) as usize).min(times.len() - 1)];
        println!(
            "ingress_handler/token/{label} single requests ({runs}): p50 {:.1} µs, p99 {:.1} µs, max {:.1} µs",
            q(0.50),
            q(0.99),
            times[times.len() - 1]
        );
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
