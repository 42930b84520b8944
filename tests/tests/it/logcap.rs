//! Captures what the relay logs, for tests that assert on log lines.
//!
//! The subscriber is the production one's shape (JSON lines, event fields at
//! the top level, the current span under `span`) but writes into memory and
//! is installed for the current thread only, so tests running in parallel
//! do not see each other's lines. Use it from a `#[tokio::test]` (a
//! current-thread runtime): every task the test spawns — the router, the
//! sandbox servers, the HTTP client's connections — then logs here too.

use serde_json::Value;
use std::sync::{Arc, Mutex};
use tracing::subscriber::DefaultGuard;

/// Everything logged on this thread while the guard lives.
#[derive(Clone, Default)]
pub struct Captured {
    buf: Arc<Mutex<Vec<u8>>>,
}

struct Sink(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Sink {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend_from_slice(data);
        Ok(data.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    /// Starts capturing with an `EnvFilter` directive (`"info"`,
    /// `"trace"`, `"shared=trace,info"`).
    pub fn start(filter: &str) -> (Self, DefaultGuard) {
        let cap = Captured::default();
        let buf = cap.buf.clone();
        let subscriber = tracing_subscriber::fmt()
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(true)
            .with_target(true)
            .with_ansi(false)
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
            .with_writer(move || Sink(buf.clone()))
            .finish();
        let guard = tracing::subscriber::set_default(subscriber);
        (cap, guard)
    }

    /// The raw text so far.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.buf.lock().unwrap_or_else(|e| e.into_inner())).into_owned()
    }

    /// The lines so far, parsed (a line that is not JSON fails the test:
    /// the log format is part of the contract).
    pub fn lines(&self) -> Vec<Value> {
        self.text()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("log line {l:?}: {e}")))
            .collect()
    }

    pub fn clear(&self) {
        self.buf.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }

    /// True if a line has `field` (top level) as a string starting with
    /// `prefix`, or equal to it as a number or boolean.
    pub fn has(&self, field: &str, prefix: &str) -> bool {
        self.lines().iter().any(|l| match &l[field] {
            Value::String(s) => s.starts_with(prefix),
            Value::Number(n) => n.to_string() == prefix,
            Value::Bool(b) => b.to_string() == prefix,
            _ => false,
        })
    }
}

#[tokio::test]
async fn capture_sees_this_threads_lines_only() {
    // given a capture on this thread
    let (cap, _guard) = Captured::start("info");
    // when lines are logged here, on another thread and below the level
    tracing::info!(reason = "seen_here", "a line");
    std::thread::spawn(|| tracing::info!(reason = "other_thread", "elsewhere"))
        .join()
        .unwrap();
    // then only this thread's lines at the level are seen
    assert!(cap.has("reason", "seen_here"));
    assert!(!cap.has("reason", "other_thread"));
    assert!(!cap.has("reason", "never_logged"));
    tracing::debug!(reason = "filtered_out", "below the level");
    assert!(!cap.has("reason", "filtered_out"));
}
