//! Where a sweep keeps its watermark, its progress and its lease.
//!
//! The watermark is the start time of the last sweep that finished: the next
//! sweep asks Jira for issues updated since then (minus an overlap). A sweep
//! that stops part-way (deadline, Jira or the target down) leaves
//! [`Progress`] behind, and the next run resumes from it instead of starting
//! over. The lease keeps two sweeps of one endpoint from running at once.
//!
//! Adapters: [`MemoryStore`] (tests), the embedded SQLite store of `relay
//! serve` / `relay reconcile` (feature `embedded`), and an SSM Parameter
//! Store adapter for the Lambda (feature `aws`).

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

/// What is stored per endpoint.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Watermark {
    /// Start time of the last sweep that finished; `None` before the first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<jiff::Timestamp>,
    /// A sweep that did not finish.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<Progress>,
}

/// Where an unfinished sweep stopped.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Progress {
    /// When the unfinished sweep started (the watermark once it finishes).
    pub started_at: jiff::Timestamp,
    /// The lower bound it scans from.
    pub from: jiff::Timestamp,
    /// The JQL of its last page (for people reading the store).
    #[serde(default)]
    pub jql: String,
    /// Creation time of the last issue it finished (pages are ordered by
    /// creation): a resumed sweep continues from there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_from: Option<jiff::Timestamp>,
    /// Issues scanned so far by this sweep.
    #[serde(default)]
    pub scanned: u64,
    /// Key of the last issue it finished: a resumed sweep skips the issues
    /// of `created_from`'s minute up to this one instead of comparing them
    /// again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_key: Option<String>,
}

/// The store failed; the sweep does not run (or stops) and says why.
#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
#[error("watermark store: {0}")]
pub struct StoreError(pub String);

#[async_trait]
pub trait WatermarkStore: Send + Sync {
    /// Takes the lease of `endpoint` for `lease` if nobody else holds an
    /// unexpired one (or `owner` already does). `false`: another sweep runs.
    async fn try_lock(
        &self,
        endpoint: &str,
        owner: &str,
        lease: Duration,
    ) -> Result<bool, StoreError>;
    /// Gives the lease back (only if `owner` holds it).
    async fn unlock(&self, endpoint: &str, owner: &str) -> Result<(), StoreError>;
    async fn load(&self, endpoint: &str) -> Result<Watermark, StoreError>;
    async fn save(&self, endpoint: &str, w: &Watermark) -> Result<(), StoreError>;
}

/// Who holds a lease, until when.
type Lease = Option<(String, std::time::Instant)>;

/// In memory (tests; one process).
#[derive(Default)]
pub struct MemoryStore {
    inner: Mutex<HashMap<String, (Watermark, Lease)>>,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }
}

#[async_trait]
impl WatermarkStore for MemoryStore {
    async fn try_lock(
        &self,
        endpoint: &str,
        owner: &str,
        lease: Duration,
    ) -> Result<bool, StoreError> {
        let mut m = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let e = m.entry(endpoint.to_owned()).or_default();
        let now = std::time::Instant::now();
        match &e.1 {
            Some((o, until)) if o != owner && *until > now => Ok(false),
            _ => {
                e.1 = Some((owner.to_owned(), now + lease));
                Ok(true)
            }
        }
    }

    async fn unlock(&self, endpoint: &str, owner: &str) -> Result<(), StoreError> {
        let mut m = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(e) = m.get_mut(endpoint) {
            if e.1.as_ref().is_some_and(|(o, _)| o == owner) {
                e.1 = None;
            }
        }
        Ok(())
    }

    async fn load(&self, endpoint: &str) -> Result<Watermark, StoreError> {
        let m = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        Ok(m.get(endpoint).map(|e| e.0.clone()).unwrap_or_default())
    }

    async fn save(&self, endpoint: &str, w: &Watermark) -> Result<(), StoreError> {
        let mut m = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        m.entry(endpoint.to_owned()).or_default().0 = w.clone();
        Ok(())
    }
}
