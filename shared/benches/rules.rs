//! Rules + mapping throughput: every Jira fixture through the Jira →
//! ServiceNow example config (whitelist, rule matching, mapping, request
//! planning), reported as events per second on one core: on parsed payloads,
//! including the JSON parse of the whole body, and including the parse through
//! the endpoint's projection, as the worker does.
//!
//! Run: `cargo bench -p shared --bench rules`. Needs `../shared/fixtures`
//! (or `RELAY_FIXTURES_DIR`); without them it prints a skip and measures nothing.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use shared::config::Config;
use std::path::PathBuf;

fn fixtures_dir() -> PathBuf {
    std::env::var_os("RELAY_FIXTURES_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/fixtures"))
}

fn bench(c: &mut Criterion) {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let dir = fixtures_dir().join("jira-webhooks");
    let Ok(entries) = std::fs::read_dir(&dir) else {
        eprintln!("SKIP rules bench: no fixtures at {}", dir.display());
        return;
    };
    let mut events: Vec<serde_json::Value> = entries
        .filter_map(|e| e.ok())
        .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
        .map(|e| serde_json::from_slice(&std::fs::read(e.path()).unwrap()).unwrap())
        .collect();
    events.sort_by_key(|v| v.to_string());
    let config = Config::from_yaml(
        &std::fs::read_to_string(root.join("examples/jira-to-servicenow.yaml")).unwrap(),
        "examples/jira-to-servicenow.yaml",
        |_| None,
    )
    .unwrap();
    let mut g = c.benchmark_group("rules");
    g.throughput(Throughput::Elements(events.len() as u64));
    g.bench_function("jira_to_servicenow_all_fixtures", |b| {
        b.iter(|| {
            let mut steps = 0usize;
            for e in &events {
                let plan = shared::rules::plan(&config, "jira", e).unwrap();
                steps += plan.rules.iter().map(|r| r.steps.len()).sum::<usize>();
            }
            std::hint::black_box(steps)
        })
    });
    let bodies: Vec<Vec<u8>> = events
        .iter()
        .map(|e| serde_json::to_vec(e).unwrap())
        .collect();
    g.bench_function("jira_to_servicenow_all_fixtures_from_bytes", |b| {
        b.iter(|| {
            let mut steps = 0usize;
            for body in &bodies {
                let e: serde_json::Value = serde_json::from_slice(body).unwrap();
                let plan = shared::rules::plan(&config, "jira", &e).unwrap();
                steps += plan.rules.iter().map(|r| r.steps.len()).sum::<usize>();
            }
            std::hint::black_box(steps)
        })
    });
    // As the worker does it: only what the endpoint's rules can read is built.
    let texts: Vec<String> = bodies
        .iter()
        .map(|b| String::from_utf8(b.clone()).unwrap())
        .collect();
    g.bench_function(
        "jira_to_servicenow_all_fixtures_from_bytes_projected",
        |b| {
            b.iter(|| {
                let mut steps = 0usize;
                for body in &texts {
                    let e = shared::rules::engine::parse_for(&config, "jira", body).unwrap();
                    let plan = shared::rules::plan(&config, "jira", &e).unwrap();
                    steps += plan.rules.iter().map(|r| r.steps.len()).sum::<usize>();
                }
                std::hint::black_box(steps)
            })
        },
    );
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
