//! The watermark store of `relay serve` and `relay reconcile`: one SQLite
//! file of its own (`<data-dir>/reconcile.sqlite`), apart from the queue's
//! database so that a sweep never contends with intake for the queue's
//! write lock. The lease is a compare-and-set inside one `IMMEDIATE`
//! transaction, so it holds across processes (a hand-run `relay reconcile`
//! next to `relay serve`).

use super::store::{StoreError, Watermark, WatermarkStore};
use crate::support::clock::{Clock, SystemClock};
use async_trait::async_trait;
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use std::path::Path;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;

pub struct SqliteStore {
    db: Mutex<Connection>,
    clock: Arc<dyn Clock>,
}

fn err(e: impl std::fmt::Display) -> StoreError {
    StoreError(e.to_string())
}

impl SqliteStore {
    /// Opens (creating if needed) `<dir>/reconcile.sqlite`.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        std::fs::create_dir_all(dir).map_err(|e| err(format!("{}: {e}", dir.display())))?;
        let path = dir.join("reconcile.sqlite");
        let db = Connection::open(&path).map_err(|e| err(format!("{}: {e}", path.display())))?;
        db.busy_timeout(Duration::from_secs(5)).map_err(err)?;
        db.execute_batch(
            "PRAGMA journal_mode = WAL;
             PRAGMA synchronous = FULL;
             CREATE TABLE IF NOT EXISTS sweeps (
                 endpoint    TEXT PRIMARY KEY,
                 watermark   TEXT NOT NULL DEFAULT '{}',
                 lease_owner TEXT,
                 lease_until INTEGER NOT NULL DEFAULT 0
             );",
        )
        .map_err(err)?;
        Ok(Self {
            db: Mutex::new(db),
            clock: Arc::new(SystemClock),
        })
    }

    /// The same store with leases timed by `clock` (tests move time).
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Who holds the lease of `endpoint` (expired or not), if anyone.
    pub fn lease_owner(&self, endpoint: &str) -> Result<Option<String>, StoreError> {
        self.with(|tx| {
            let owner = tx
                .query_row(
                    "SELECT lease_owner FROM sweeps WHERE endpoint = ?1",
                    [endpoint],
                    |r| r.get::<_, Option<String>>(0),
                )
                .or_else(|e| match e {
                    rusqlite::Error::QueryReturnedNoRows => Ok(None),
                    e => Err(e),
                })?;
            Ok(owner)
        })
    }

    fn with<T>(
        &self,
        f: impl FnOnce(&rusqlite::Transaction<'_>) -> rusqlite::Result<T>,
    ) -> Result<T, StoreError> {
        let mut db = self.db.lock().unwrap_or_else(|e| e.into_inner());
        let tx = db
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(err)?;
        let out = f(&tx).map_err(err)?;
        tx.commit().map_err(err)?;
        Ok(out)
    }
}

#[async_trait]
impl WatermarkStore for SqliteStore {
    async fn try_lock(
        &self,
        endpoint: &str,
        owner: &str,
        lease: Duration,
    ) -> Result<bool, StoreError> {
        let now = self.clock.now().as_millisecond();
        let until = now + lease.as_millis() as i64;
        self.with(|tx| {
            tx.execute(
                "INSERT OR IGNORE INTO sweeps (endpoint) VALUES (?1)",
                [endpoint],
            )?;
            let n = tx.execute(
                "UPDATE sweeps SET lease_owner = ?2, lease_until = ?3
                 WHERE endpoint = ?1
                   AND (lease_owner IS NULL OR lease_owner = ?2 OR lease_until <= ?4)",
                params![endpoint, owner, until, now],
            )?;
            Ok(n == 1)
        })
    }

    async fn unlock(&self, endpoint: &str, owner: &str) -> Result<(), StoreError> {
        self.with(|tx| {
            tx.execute(
                "UPDATE sweeps SET lease_owner = NULL, lease_until = 0
                 WHERE endpoint = ?1 AND lease_owner = ?2",
                params![endpoint, owner],
            )?;
            Ok(())
        })
    }

    async fn load(&self, endpoint: &str) -> Result<Watermark, StoreError> {
        let text: Option<String> = self.with(|tx| {
            tx.query_row(
                "SELECT watermark FROM sweeps WHERE endpoint = ?1",
                [endpoint],
                |r| r.get(0),
            )
            .optional()
        })?;
        match text {
            None => Ok(Watermark::default()),
            Some(t) => serde_json::from_str(&t).map_err(|e| {
                err(format!(
                    "stored watermark of `{endpoint}` is unreadable: {e}"
                ))
            }),
        }
    }

    async fn save(&self, endpoint: &str, w: &Watermark) -> Result<(), StoreError> {
        let text = serde_json::to_string(w).map_err(err)?;
        self.with(|tx| {
            tx.execute(
                "INSERT INTO sweeps (endpoint, watermark) VALUES (?1, ?2)
                 ON CONFLICT (endpoint) DO UPDATE SET watermark = excluded.watermark",
                params![endpoint, text],
            )?;
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn lease_watermark_and_two_processes() {
        let dir = tempfile::tempdir().unwrap();
        let a = SqliteStore::open(dir.path()).unwrap();
        let b = SqliteStore::open(dir.path()).unwrap();
        assert_eq!(a.load("jira").await.unwrap(), Watermark::default());
        let lease = Duration::from_secs(60);
        assert!(a.try_lock("jira", "a", lease).await.unwrap());
        assert!(a.try_lock("jira", "a", lease).await.unwrap(), "renewal");
        assert!(!b.try_lock("jira", "b", lease).await.unwrap(), "held by a");
        assert!(
            b.try_lock("other", "b", lease).await.unwrap(),
            "per endpoint"
        );
        let w = Watermark {
            since: Some("2026-11-23T10:00:00Z".parse().unwrap()),
            progress: None,
        };
        a.save("jira", &w).await.unwrap();
        assert_eq!(b.load("jira").await.unwrap(), w);
        b.unlock("jira", "b").await.unwrap();
        assert!(
            !b.try_lock("jira", "b", lease).await.unwrap(),
            "not b's to free"
        );
        a.unlock("jira", "a").await.unwrap();
        assert!(b.try_lock("jira", "b", lease).await.unwrap());
        // An expired lease is taken over.
        assert!(b.try_lock("x", "b", Duration::ZERO).await.unwrap());
        assert!(a.try_lock("x", "a", lease).await.unwrap());
    }
}
