//! SANDBOX, not a product: starts the ServiceNow and Jira contract servers
//! from the test support on 127.0.0.1 and prints their base URLs as one JSON
//! line, then serves until stdin closes or Ctrl-C. For trying the worker by
//! hand (`cargo lambda watch` + `cargo lambda invoke`) without a real
//! ServiceNow or Jira. Default credentials: see `sandbox::*_server`.
//!
//! Options (for the benchmarks in `infra/bench/`):
//! - `--servicenow-latency-ms N`: every ServiceNow answer comes N ms later.
//! - `--servicenow-threads N --servicenow-queue Q`: the instance's `API_INT`
//!   semaphore: N requests handled at once, Q more wait, the rest get a 429
//!   (latency grows past N concurrent calls, refusals start past N + Q).
//! - `--records-json`: at exit, print each incident as one JSON line on
//!   stdout, `{"record": {...}, "created_unix_ms": ..., "created_unix_us": ...,
//!   "create_arrived_unix_us": ...}` (when the creating `POST` had arrived,
//!   before the added latency; `null` for a record not created by a `POST`).
#![forbid(unsafe_code)]

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sandbox::jira_server::JiraServer;
use sandbox::servicenow_server::ServiceNowServer;

struct Options {
    latency_ms: u64,
    threads: usize,
    queue: usize,
    records_json: bool,
}

fn options() -> Result<Options, String> {
    let mut o = Options {
        latency_ms: 0,
        threads: 0,
        queue: 0,
        records_json: false,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--servicenow-latency-ms" => {
                let v = args.next().ok_or("--servicenow-latency-ms needs a value")?;
                o.latency_ms = v
                    .parse()
                    .map_err(|_| format!("--servicenow-latency-ms: not a number: {v}"))?;
            }
            "--servicenow-threads" | "--servicenow-queue" => {
                let v = args.next().ok_or(format!("{a} needs a value"))?;
                let n = v.parse().map_err(|_| format!("{a}: not a number: {v}"))?;
                if a == "--servicenow-threads" {
                    o.threads = n;
                } else {
                    o.queue = n;
                }
            }
            "--records-json" => o.records_json = true,
            other => {
                return Err(format!(
                    "unknown argument {other} (usage: sandbox [--servicenow-latency-ms N] [--servicenow-threads N --servicenow-queue Q] [--records-json])"
                ))
            }
        }
    }
    Ok(o)
}

#[tokio::main]
async fn main() {
    let opts = match options() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("sandbox: {e}");
            std::process::exit(2);
        }
    };
    let sn = ServiceNowServer::start().await;
    sn.set_latency(Duration::from_millis(opts.latency_ms));
    sn.set_capacity(opts.threads, opts.queue);
    let jira = JiraServer::start().await;
    println!(
        "{}",
        serde_json::json!({"sandbox": true, "servicenow": sn.base_url(), "jira": jira.base_url()})
    );
    let stdin_closed = tokio::task::spawn_blocking(|| {
        let mut sink = String::new();
        while std::io::stdin().read_line(&mut sink).is_ok_and(|n| n > 0) {
            sink.clear();
        }
    });
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = stdin_closed => {}
    }
    let incidents = sn.records_created("incident");
    let arrivals = sn.create_arrivals("incident");
    eprintln!(
        "sandbox: {} incident(s), {} Jira issue(s)",
        incidents.len(),
        jira.issues().len()
    );
    if opts.records_json {
        // First line of the exit report: what the instance was asked.
        println!(
            "{}",
            serde_json::json!({"stats": {
                "servicenow_requests": sn.requests().len(),
                "refused_429": sn.refused_by_capacity(),
            }})
        );
    }
    for (record, created) in incidents {
        if opts.records_json {
            let us =
                |t: SystemTime| t.duration_since(UNIX_EPOCH).unwrap_or_default().as_micros() as u64;
            let arrived = record
                .get("sys_id")
                .and_then(serde_json::Value::as_str)
                .and_then(|id| arrivals.get(id));
            // Microseconds too: a pipeline that takes about a millisecond is
            // not measured by a stamp cut down to whole milliseconds.
            println!(
                "{}",
                serde_json::json!({
                    "record": record,
                    "created_unix_ms": us(created) / 1000,
                    "created_unix_us": us(created),
                    "create_arrived_unix_us": arrived.copied().map(us),
                })
            );
        } else {
            eprintln!("  {}", serde_json::Value::Object(record));
        }
    }
}
