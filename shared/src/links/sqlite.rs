//! The link store of `relay serve`: `<data-dir>/links.sqlite`, a file of its
//! own beside the queue's, so that link writes never wait for intake's write
//! lock. WAL with `synchronous = NORMAL`: an entry survives a crash of the
//! process; a power cut may lose the last ones, which the records'
//! correlation fields and the lookups rebuild (the store is never the only
//! place a pairing exists).

use super::{Entry, LinkBackend, LinkError};
use async_trait::async_trait;
use rusqlite::{params, Connection, OptionalExtension};
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

pub struct SqliteBackend {
    db: Mutex<Connection>,
}

fn err(e: impl std::fmt::Display) -> LinkError {
    LinkError::Unavailable(e.to_string())
}

impl SqliteBackend {
    /// Opens (creating if needed) `<dir>/links.sqlite`.
    pub fn open(dir: &Path) -> Result<Self, LinkError> {
        std::fs::create_dir_all(dir).map_err(|e| err(format!("{}: {e}", dir.display())))?;
        let path = dir.join("links.sqlite");
        let db = Connection::open(&path).map_err(|e| err(format!("{}: {e}", path.display())))?;
        db.busy_timeout(Duration::from_secs(5)).map_err(err)?;
        db.execute_batch(
            "PRAGMA journal_mode = WAL;
             PRAGMA synchronous = NORMAL;
             CREATE TABLE IF NOT EXISTS links (
                 pk         TEXT NOT NULL,
                 sk         TEXT NOT NULL,
                 value      TEXT NOT NULL,
                 expires_at INTEGER,
                 PRIMARY KEY (pk, sk)
             ) WITHOUT ROWID;
             CREATE INDEX IF NOT EXISTS links_expiry ON links (expires_at);",
        )
        .map_err(err)?;
        let me = Self { db: Mutex::new(db) };
        me.prune(jiff::Timestamp::now().as_second())?;
        Ok(me)
    }

    /// Removes entries expired before `now` (run at open; readers skip them anyway).
    pub fn prune(&self, now: i64) -> Result<usize, LinkError> {
        self.lock()
            .execute(
                "DELETE FROM links WHERE expires_at IS NOT NULL AND expires_at <= ?1",
                [now],
            )
            .map_err(err)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.db.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Entry> {
    Ok(Entry {
        pk: r.get(0)?,
        sk: r.get(1)?,
        value: r.get(2)?,
        expires_at: r.get(3)?,
    })
}

#[async_trait]
impl LinkBackend for SqliteBackend {
    async fn get(&self, pk: &str, sk: &str, now: i64) -> Result<Option<Entry>, LinkError> {
        self.lock()
            .prepare_cached(
                "SELECT pk, sk, value, expires_at FROM links
                 WHERE pk = ?1 AND sk = ?2 AND (expires_at IS NULL OR expires_at > ?3)",
            )
            .and_then(|mut s| s.query_row(params![pk, sk, now], row).optional())
            .map_err(err)
    }

    async fn put(&self, e: &Entry) -> Result<(), LinkError> {
        self.lock()
            .prepare_cached(
                "INSERT OR REPLACE INTO links (pk, sk, value, expires_at) VALUES (?1, ?2, ?3, ?4)",
            )
            .and_then(|mut s| s.execute(params![e.pk, e.sk, e.value, e.expires_at]))
            .map(drop)
            .map_err(err)
    }

    async fn put_new(&self, e: &Entry, now: i64) -> Result<bool, LinkError> {
        // One statement: the conflict clause only replaces an expired entry.
        self.lock()
            .prepare_cached(
                "INSERT INTO links (pk, sk, value, expires_at) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (pk, sk) DO UPDATE SET value = excluded.value,
                     expires_at = excluded.expires_at
                 WHERE links.expires_at IS NOT NULL AND links.expires_at <= ?5",
            )
            .and_then(|mut s| s.execute(params![e.pk, e.sk, e.value, e.expires_at, now]))
            .map(|n| n == 1)
            .map_err(err)
    }

    async fn delete(&self, pk: &str, sk: &str) -> Result<(), LinkError> {
        self.lock()
            .prepare_cached("DELETE FROM links WHERE pk = ?1 AND sk = ?2")
            .and_then(|mut s| s.execute(params![pk, sk]))
            .map(drop)
            .map_err(err)
    }

    async fn query(
        &self,
        pk: &str,
        prefix: &str,
        limit: usize,
        now: i64,
    ) -> Result<Vec<Entry>, LinkError> {
        // `sk >= prefix AND substr(sk, 1, len) = prefix`: the range uses the
        // primary key; substr avoids LIKE's wildcards in keys.
        let db = self.lock();
        let mut s = db
            .prepare_cached(
                "SELECT pk, sk, value, expires_at FROM links
                 WHERE pk = ?1 AND sk >= ?2 AND substr(sk, 1, ?3) = ?2
                   AND (expires_at IS NULL OR expires_at > ?4)
                 ORDER BY sk LIMIT ?5",
            )
            .map_err(err)?;
        let rows = s
            .query_map(
                params![pk, prefix, prefix.chars().count() as i64, now, limit as i64],
                row,
            )
            .map_err(err)?;
        rows.collect::<Result<Vec<_>, _>>().map_err(err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[tokio::test]
    async fn sqlite_backend_contract_and_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let b = Arc::new(SqliteBackend::open(dir.path()).unwrap());
        crate::links::testing::backend_contract(b.clone()).await;
        drop(b);
        let b = SqliteBackend::open(dir.path()).unwrap();
        assert_eq!(b.get("a", "-", 100).await.unwrap().unwrap().value, "1");
    }
}
