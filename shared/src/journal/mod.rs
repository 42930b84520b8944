//! The delivery journal: what became of every message, one row per attempt
//! (the operator console's message feed, conversation view and connection
//! health read it). It is a record, not a source of truth: the queue is.
//! Writing it never waits — a journal that is full or unavailable drops the
//! row, logs why and counts `JournalDropped`; the message is handled all the
//! same.
//!
//! The field names are the ones of the worker's `relay::delivery` log line
//! (and so of the Logs Insights queries the SAM template ships): one
//! vocabulary for the journal, the logs and the queries.
//!
//! - [`Delivery`], [`CallMade`]: one attempt and the calls it made (method,
//!   connection, path, status, duration — never headers, bodies or secrets).
//! - [`calls`]: the connector notes each call into the attempt being handled.
//! - [`JournalSink`]: the port the worker writes to; [`sqlite`] the adapter of
//!   `relay serve` (`<data-dir>/journal.sqlite`, retention and a size bound).

pub mod calls;
#[cfg(feature = "embedded")]
pub mod sqlite;

use serde::Serialize;

/// One call to a target system made while handling a message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct CallMade {
    pub connection: String,
    pub method: String,
    /// The path and query under the connection's base URL (or the download URL).
    pub path: String,
    /// `None`: no answer (timeout, connection error; see `error`).
    pub status: Option<u16>,
    pub duration_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// One attempt at one message.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Delivery {
    /// Assigned by the journal (0 before).
    pub id: i64,
    /// When the attempt ended (ms since the epoch).
    pub at_ms: i64,
    /// When intake received the webhook (RFC 3339), when known.
    pub received_at: String,
    pub message_id: String,
    pub endpoint: String,
    pub event: String,
    pub event_type: String,
    pub delivery_id: String,
    pub change_id: String,
    pub source_key: String,
    pub origin: String,
    pub receive_count: u32,
    pub outcome: String,
    pub reason: String,
    /// `rule:action` of every rule applied.
    pub rules: Vec<String>,
    /// The target records (ServiceNow number, Jira key) of the rules applied.
    pub targets: Vec<String>,
    pub calls: Vec<CallMade>,
    pub duration_ms: u64,
    pub dead_lettered: bool,
    /// `processed` (from the queue) or `replayed` (from the park).
    pub what: String,
}

/// Where the worker writes what it did. Never blocks, never fails the caller.
pub trait JournalSink: Send + Sync {
    fn record(&self, d: Delivery);
}

/// Nothing is kept (the Lambdas: their log lines are the journal).
pub struct NoJournal;

impl JournalSink for NoJournal {
    fn record(&self, _: Delivery) {}
}

/// Last success and failure of one connection, as the journal saw them.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ConnectionHealth {
    pub connection: String,
    pub last_success_ms: Option<i64>,
    pub last_failure_ms: Option<i64>,
    /// The failed call: status or error, and its path.
    pub last_failure: String,
    pub calls: u64,
}

/// One record's conversation: the attempts about `key`, the keys of the
/// records paired with it (the sources and targets those attempts name),
/// then every attempt about any of them — oldest first, with the keys.
/// `about(k)` answers the attempts whose source or target is `k`.
pub async fn conversation<F, Fut>(
    key: &str,
    about: F,
) -> Result<(Vec<String>, Vec<Delivery>), String>
where
    F: Fn(String) -> Fut,
    Fut: std::future::Future<Output = Result<Vec<Delivery>, String>>,
{
    let first = about(key.to_owned()).await?;
    let mut keys = vec![key.to_owned()];
    for d in &first {
        for k in std::iter::once(&d.source_key).chain(&d.targets) {
            if !k.is_empty() && !keys.contains(k) {
                keys.push(k.clone());
            }
        }
    }
    let mut all = std::collections::BTreeMap::new();
    for d in first {
        all.insert((d.at_ms, d.id), d);
    }
    for k in keys.iter().skip(1) {
        for d in about(k.clone()).await? {
            all.insert((d.at_ms, d.id), d);
        }
    }
    Ok((keys, all.into_values().collect()))
}
