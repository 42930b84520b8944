//! ADF conversions: every ADF fixture to plain text and to wiki markup, and
//! plain text (the fixtures' own text) back to ADF, reported as documents per
//! second and bytes of ADF JSON per second on one core.
//!
//! Run: `cargo bench -p shared --bench adf`. Needs `../shared/fixtures` (or
//! `RELAY_FIXTURES_DIR`); without them it prints a skip and measures nothing.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use std::path::PathBuf;

fn fixtures_dir() -> PathBuf {
    std::env::var_os("RELAY_FIXTURES_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/fixtures"))
}

fn bench(c: &mut Criterion) {
    let dir = fixtures_dir().join("adf");
    let Ok(entries) = std::fs::read_dir(&dir) else {
        eprintln!(
            "*** SKIPPED adf bench: no fixtures at {} ***",
            dir.display()
        );
        return;
    };
    let mut docs: Vec<(String, serde_json::Value)> = entries
        .filter_map(|e| e.ok())
        .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
        .map(|e| {
            let raw = std::fs::read(e.path()).unwrap();
            (
                e.file_name().to_string_lossy().into_owned(),
                serde_json::from_slice(&raw).unwrap(),
            )
        })
        .filter(|(_, v)| shared::rules::adf::is_adf(v))
        .collect();
    docs.sort_by(|a, b| a.0.cmp(&b.0));
    assert!(!docs.is_empty(), "no ADF document in {}", dir.display());
    let bytes: u64 = docs.iter().map(|(_, v)| v.to_string().len() as u64).sum();
    let texts: Vec<String> = docs
        .iter()
        .map(|(_, v)| shared::rules::adf::to_text(v))
        .collect();

    let mut g = c.benchmark_group("adf");
    g.throughput(Throughput::Elements(docs.len() as u64));
    g.bench_function("to_text_all_fixtures", |b| {
        b.iter(|| {
            for (_, d) in &docs {
                std::hint::black_box(shared::rules::adf::to_text(std::hint::black_box(d)));
            }
        })
    });
    g.bench_function("to_wiki_all_fixtures", |b| {
        b.iter(|| {
            for (_, d) in &docs {
                std::hint::black_box(shared::rules::adf::to_wiki(std::hint::black_box(d)));
            }
        })
    });
    g.bench_function("from_text_all_fixtures", |b| {
        b.iter(|| {
            for t in &texts {
                std::hint::black_box(shared::rules::adf::from_text(std::hint::black_box(t)));
            }
        })
    });
    g.throughput(Throughput::Bytes(bytes));
    g.bench_function("parse_and_to_text_all_fixtures", |b| {
        let raw: Vec<String> = docs.iter().map(|(_, v)| v.to_string()).collect();
        b.iter(|| {
            for r in &raw {
                let v: serde_json::Value = serde_json::from_str(r).unwrap();
                std::hint::black_box(shared::rules::adf::to_text(&v));
            }
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
