//! The link store's port: a sorted map of (partition key, sort key) → value with
//! per-entry expiry, and the in-memory adapter. The other adapters are
//! [`super::sqlite`] (`relay serve`) and `super::dynamo` (AWS).

use async_trait::async_trait;
use std::collections::BTreeMap;
use std::sync::Mutex;

/// A link store failure. Always retryable: an event whose store is
/// unavailable goes back to the queue, it is never applied half-blind.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error("link store unavailable: {0}")]
    Unavailable(String),
    #[error("link store entry unreadable: {0}")]
    Corrupt(String),
}

impl crate::support::error::Classified for LinkError {
    fn class(&self) -> crate::support::error::Class {
        crate::support::error::Class::Retryable
    }
    fn code(&self) -> &'static str {
        "link_store_unavailable"
    }
}
/// One stored entry. `expires_at` is in Unix seconds (DynamoDB's TTL unit).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub pk: String,
    pub sk: String,
    pub value: String,
    pub expires_at: Option<i64>,
}

impl Entry {
    pub(crate) fn live(&self, now: i64) -> bool {
        self.expires_at.is_none_or(|t| t > now)
    }
}

/// The port: a map of (partition key, sort key) → value with expiry.
#[async_trait]
pub trait LinkBackend: Send + Sync {
    /// The entry, if present and not expired at `now`.
    async fn get(&self, pk: &str, sk: &str, now: i64) -> Result<Option<Entry>, LinkError>;
    /// Writes (replaces) the entry.
    async fn put(&self, entry: &Entry) -> Result<(), LinkError>;
    /// Writes the entry only if no live one exists; `true` if written.
    async fn put_new(&self, entry: &Entry, now: i64) -> Result<bool, LinkError>;
    async fn delete(&self, pk: &str, sk: &str) -> Result<(), LinkError>;
    /// Live entries of partition `pk` whose sort key starts with `prefix`,
    /// in sort-key order, at most `limit`.
    async fn query(
        &self,
        pk: &str,
        prefix: &str,
        limit: usize,
        now: i64,
    ) -> Result<Vec<Entry>, LinkError>;
}

/// In-memory backend: one process, nothing survives it.
#[derive(Default)]
pub struct MemoryBackend {
    map: Mutex<BTreeMap<(String, String), Entry>>,
}

impl MemoryBackend {
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<(String, String), Entry>> {
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[async_trait]
impl LinkBackend for MemoryBackend {
    async fn get(&self, pk: &str, sk: &str, now: i64) -> Result<Option<Entry>, LinkError> {
        Ok(self
            .lock()
            .get(&(pk.to_owned(), sk.to_owned()))
            .filter(|e| e.live(now))
            .cloned())
    }
    async fn put(&self, entry: &Entry) -> Result<(), LinkError> {
        self.lock()
            .insert((entry.pk.clone(), entry.sk.clone()), entry.clone());
        Ok(())
    }
    async fn put_new(&self, entry: &Entry, now: i64) -> Result<bool, LinkError> {
        let mut m = self.lock();
        let k = (entry.pk.clone(), entry.sk.clone());
        if m.get(&k).is_some_and(|e| e.live(now)) {
            return Ok(false);
        }
        m.insert(k, entry.clone());
        Ok(true)
    }
    async fn delete(&self, pk: &str, sk: &str) -> Result<(), LinkError> {
        self.lock().remove(&(pk.to_owned(), sk.to_owned()));
        Ok(())
    }
    async fn query(
        &self,
        pk: &str,
        prefix: &str,
        limit: usize,
        now: i64,
    ) -> Result<Vec<Entry>, LinkError> {
        let m = self.lock();
        Ok(m.range((pk.to_owned(), prefix.to_owned())..)
            .take_while(|((p, s), _)| p == pk && s.starts_with(prefix))
            .map(|(_, e)| e)
            .filter(|e| e.live(now))
            .take(limit)
            .cloned()
            .collect())
    }
}
