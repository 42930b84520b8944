//! A TTL cache in front of any [`SecretStore`].
//!
//! Secrets Manager costs a round trip and money per call; the ingress reads the
//! same webhook secret on every request. Entries live for `ttl`. If a refresh
//! fails because the store is unavailable, a cached value younger than
//! `max_stale` is served (with a warning) rather than turning a Secrets Manager
//! hiccup into a wave of 503s. `refetch` bypasses the cache, but at most once
//! per `min_refetch` per secret, so a caller sending bad credentials cannot
//! make us hammer the store. `fetch_latest` always goes to the store (its
//! callers bound it). `put` writes through and then reloads the entry from
//! the store, so the next read sees the written value and its new version.

use super::store::{SecretError, SecretStore, SecretVersions};
use async_trait::async_trait;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

struct Entry {
    fetched: Instant,
    value: Arc<SecretVersions>,
}

pub struct CachedSecretStore<S> {
    inner: S,
    ttl: Duration,
    max_stale: Duration,
    min_refetch: Duration,
    entries: Mutex<HashMap<String, Entry>>,
}

impl<S: SecretStore> CachedSecretStore<S> {
    /// Defaults: ttl 5 min, serve stale up to 1 h on store failure, refetch at
    /// most every 5 s (one Secrets Manager call per 5 s per secret while a
    /// target keeps refusing; a rotation is seen within 5 s of the 401).
    pub fn new(inner: S) -> Self {
        Self::with_ttl(inner, Duration::from_secs(300))
    }

    pub fn with_ttl(inner: S, ttl: Duration) -> Self {
        Self {
            inner,
            ttl,
            max_stale: Duration::from_secs(3600),
            min_refetch: Duration::from_secs(5),
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// Minimum age of a cached entry before `refetch` goes to the store again.
    pub fn min_refetch(mut self, d: Duration) -> Self {
        self.min_refetch = d;
        self
    }

    /// How long a cached value may be served when the store is unavailable.
    pub fn max_stale(mut self, d: Duration) -> Self {
        self.max_stale = d;
        self
    }

    fn cached(&self, id: &str) -> Option<(Duration, Arc<SecretVersions>)> {
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries
            .get(id)
            .map(|e| (e.fetched.elapsed(), e.value.clone()))
    }

    async fn load(&self, id: &str) -> Result<Arc<SecretVersions>, SecretError> {
        match self.inner.refetch(id).await {
            Ok(v) => {
                let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
                entries.insert(
                    id.to_owned(),
                    Entry {
                        fetched: Instant::now(),
                        value: v.clone(),
                    },
                );
                Ok(v)
            }
            Err(err @ SecretError::Unavailable { .. }) => match self.cached(id) {
                Some((age, v)) if age <= self.max_stale => {
                    tracing::warn!(
                        secret_id = id,
                        reason = err.reason(),
                        age_s = age.as_secs(),
                        "secret store unavailable; serving cached secret"
                    );
                    Ok(v)
                }
                _ => Err(err),
            },
            Err(err) => {
                // The secret is gone or lost its key: forget it so nothing
                // keeps authenticating with a deleted credential.
                self.entries
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(id);
                Err(err)
            }
        }
    }
}

#[async_trait]
impl<S: SecretStore> SecretStore for CachedSecretStore<S> {
    async fn fetch(&self, id: &str) -> Result<Arc<SecretVersions>, SecretError> {
        match self.cached(id) {
            Some((age, v)) if age < self.ttl => Ok(v),
            _ => self.load(id).await,
        }
    }

    async fn refetch(&self, id: &str) -> Result<Arc<SecretVersions>, SecretError> {
        match self.cached(id) {
            Some((age, v)) if age < self.min_refetch => Ok(v),
            _ => self.load(id).await,
        }
    }

    async fn fetch_latest(&self, id: &str) -> Result<Arc<SecretVersions>, SecretError> {
        self.load(id).await
    }

    async fn put(
        &self,
        id: &str,
        key: &str,
        value: &str,
        expected_version: Option<&str>,
    ) -> Result<String, SecretError> {
        let written = self.inner.put(id, key, value, expected_version).await;
        // Written or not, what we cached may be stale now.
        self.entries
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(id);
        let version = written?;
        if let Err(e) = self.load(id).await {
            tracing::warn!(
                secret_id = id,
                reason = e.reason(),
                "re-reading a written secret failed"
            );
        }
        Ok(version)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secrets::store::SecretValue;
    use std::sync::atomic::{AtomicUsize, Ordering};

    struct Counting {
        calls: AtomicUsize,
        fail: std::sync::atomic::AtomicBool,
    }

    #[async_trait]
    impl SecretStore for Counting {
        async fn fetch(&self, id: &str) -> Result<Arc<SecretVersions>, SecretError> {
            let n = self.calls.fetch_add(1, Ordering::SeqCst);
            if self.fail.load(Ordering::SeqCst) {
                return Err(SecretError::Unavailable {
                    id: id.into(),
                    detail: "down".into(),
                });
            }
            Ok(Arc::new(SecretVersions {
                current: SecretValue::parse(format!("v{n}")),
                previous: None,
                version: None,
            }))
        }
    }

    fn counting() -> Counting {
        Counting {
            calls: AtomicUsize::new(0),
            fail: false.into(),
        }
    }

    #[tokio::test]
    async fn caches_within_ttl_and_limits_refetch() {
        let store = CachedSecretStore::new(counting());
        store.fetch("a").await.unwrap();
        store.fetch("a").await.unwrap();
        store.refetch("a").await.unwrap();
        assert_eq!(store.inner.calls.load(Ordering::SeqCst), 1);

        let eager =
            CachedSecretStore::with_ttl(counting(), Duration::ZERO).min_refetch(Duration::ZERO);
        eager.fetch("a").await.unwrap();
        eager.fetch("a").await.unwrap();
        eager.refetch("a").await.unwrap();
        assert_eq!(eager.inner.calls.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn serves_stale_only_when_store_is_down_and_within_bound() {
        let store = CachedSecretStore::with_ttl(counting(), Duration::ZERO);
        let first = store.fetch("a").await.unwrap();
        store.inner.fail.store(true, Ordering::SeqCst);
        let stale = store.fetch("a").await.unwrap();
        assert!(Arc::ptr_eq(&first, &stale));
        assert!(store.fetch("b").await.is_err(), "nothing cached for b");

        let strict =
            CachedSecretStore::with_ttl(counting(), Duration::ZERO).max_stale(Duration::ZERO);
        strict.fetch("a").await.unwrap();
        strict.inner.fail.store(true, Ordering::SeqCst);
        std::thread::sleep(Duration::from_millis(2));
        assert!(strict.fetch("a").await.is_err());
    }
}
