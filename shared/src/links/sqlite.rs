//! The link store of `relay serve`: `<data-dir>/links.sqlite`, a file of its
//! own beside the queue's, so that link writes never wait for intake's write
//! lock. WAL with `synchronous = NORMAL`: an entry survives a crash of the
//! process; a power cut may lose the last ones, which the records'
//! correlation fields and the lookups rebuild (the store is never the only
//! place a pairing exists).
//!
//! The log is checkpointed into the file when writes pause
//! ([`SqliteBackend::spawn_quiet_checkpoints`], `relay serve`), on a
//! connection of its own, so that the checkpoint SQLite would otherwise run
//! inside every ~1 000th page written — a few milliseconds of copying and two
//! fsyncs, on the worker's thread, before the write that crossed the mark
//! (often a create's "uncertain" mark, just before its call) — falls into a
//! pause instead. The same connection then writes the time of the checkpoint
//! (table `checkpoints`): that first write after a checkpoint starts the log
//! again from its beginning, and SQLite syncs the log's new header as it
//! does so, which is better done in the pause too than by the next worker.
//! Under writes without a pause, SQLite's own checkpoint at 1 000 pages still
//! keeps the log short.

use super::{Entry, LinkBackend, LinkError};
use async_trait::async_trait;
use rusqlite::{params, Connection, OptionalExtension};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

pub struct SqliteBackend {
    db: Mutex<Connection>,
    path: PathBuf,
    /// Writes committed since the last quiet checkpoint.
    writes: AtomicU64,
    /// When the last write committed, in ms since `opened`.
    written_ms: AtomicU64,
    opened: Instant,
    /// The write count at which the quiet checkpointer is woken (`u64::MAX`
    /// while none runs); it sleeps until then, so an idle relay is not woken.
    wake_at: AtomicU64,
    wake: Arc<tokio::sync::Notify>,
}

impl Drop for SqliteBackend {
    fn drop(&mut self) {
        // The checkpointer wakes, finds the backend gone and ends.
        self.wake.notify_one();
    }
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
             CREATE INDEX IF NOT EXISTS links_expiry ON links (expires_at);
             CREATE TABLE IF NOT EXISTS checkpoints (
                 id INTEGER PRIMARY KEY CHECK (id = 1),
                 at INTEGER NOT NULL
             );",
        )
        .map_err(err)?;
        let me = Self {
            db: Mutex::new(db),
            path,
            writes: AtomicU64::new(0),
            wake_at: AtomicU64::new(u64::MAX),
            wake: Arc::new(tokio::sync::Notify::new()),
            written_ms: AtomicU64::new(0),
            opened: Instant::now(),
        };
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

    fn wrote<T>(&self, r: Result<T, LinkError>) -> Result<T, LinkError> {
        if r.is_ok() {
            self.written_ms
                .store(self.opened.elapsed().as_millis() as u64, Ordering::Relaxed);
            let n = self.writes.fetch_add(1, Ordering::Relaxed) + 1;
            if n >= self.wake_at.load(Ordering::Relaxed) {
                self.wake.notify_one();
            }
        }
        r
    }

    /// Checkpoints the log once `writes` writes have committed since the
    /// last time and none for `quiet` (checked every `quiet` from the
    /// `writes`th on; nothing runs before), on a
    /// connection of its own, on the blocking pool (`PASSIVE`: it never waits
    /// for a write; its own small write after it gives up at once when a
    /// worker is writing). Ends when the backend is dropped.
    pub fn spawn_quiet_checkpoints(
        self: &Arc<Self>,
        quiet: Duration,
        writes: u64,
    ) -> Result<tokio::task::JoinHandle<()>, LinkError> {
        let conn = Connection::open(&self.path)
            .map_err(|e| err(format!("{}: {e}", self.path.display())))?;
        conn.execute_batch("PRAGMA synchronous = NORMAL;")
            .map_err(err)?;
        conn.busy_timeout(Duration::ZERO).map_err(err)?;
        let conn = Arc::new(Mutex::new(conn));
        let writes = writes.max(1);
        self.wake_at.store(writes, Ordering::Relaxed);
        let wake = self.wake.clone();
        let me: Weak<Self> = Arc::downgrade(self);
        Ok(tokio::spawn(async move {
            loop {
                wake.notified().await;
                // Then every `quiet` until the writes pause.
                let since = loop {
                    tokio::time::sleep(quiet).await;
                    let Some(b) = me.upgrade() else { return };
                    let last = Duration::from_millis(b.written_ms.load(Ordering::Relaxed));
                    if b.opened.elapsed() >= last + quiet {
                        break b.writes.load(Ordering::Relaxed);
                    }
                };
                if since < writes {
                    continue; // a wake left from before the last checkpoint
                }
                let Some(b) = me.upgrade() else { return };
                b.writes.fetch_sub(since, Ordering::Relaxed);
                drop(b);
                let conn = conn.clone();
                let done = tokio::task::spawn_blocking(move || {
                    let conn = conn.lock().unwrap_or_else(|e| e.into_inner());
                    let (log, copied) =
                        conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
                            Ok((r.get::<_, i64>(1)?, r.get::<_, i64>(2)?))
                        })?;
                    if log == copied {
                        conn.execute(
                            "INSERT OR REPLACE INTO checkpoints (id, at) VALUES (1, ?1)",
                            [jiff::Timestamp::now().as_millisecond()],
                        )?;
                    }
                    Ok::<_, rusqlite::Error>((log, copied))
                })
                .await;
                match done {
                    Ok(Ok((log, copied))) => {
                        tracing::trace!(log, copied, "link store checkpointed in a pause")
                    }
                    Ok(Err(e)) => tracing::debug!(error = %e, "link store checkpoint failed"),
                    Err(e) => tracing::debug!(error = %e, "link store checkpoint abandoned"),
                }
            }
        }))
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
        let r = self
            .lock()
            .prepare_cached(
                "INSERT OR REPLACE INTO links (pk, sk, value, expires_at) VALUES (?1, ?2, ?3, ?4)",
            )
            .and_then(|mut s| s.execute(params![e.pk, e.sk, e.value, e.expires_at]))
            .map(drop)
            .map_err(err);
        self.wrote(r)
    }

    async fn put_new(&self, e: &Entry, now: i64) -> Result<bool, LinkError> {
        // One statement: the conflict clause only replaces an expired entry.
        let r = self
            .lock()
            .prepare_cached(
                "INSERT INTO links (pk, sk, value, expires_at) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (pk, sk) DO UPDATE SET value = excluded.value,
                     expires_at = excluded.expires_at
                 WHERE links.expires_at IS NOT NULL AND links.expires_at <= ?5",
            )
            .and_then(|mut s| s.execute(params![e.pk, e.sk, e.value, e.expires_at, now]))
            .map(|n| n == 1)
            .map_err(err);
        self.wrote(r)
    }

    async fn delete(&self, pk: &str, sk: &str) -> Result<(), LinkError> {
        let r = self
            .lock()
            .prepare_cached("DELETE FROM links WHERE pk = ?1 AND sk = ?2")
            .and_then(|mut s| s.execute(params![pk, sk]))
            .map(drop)
            .map_err(err);
        self.wrote(r)
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

    /// The log's checkpoint sequence number (its header, bytes 12..16): it
    /// goes up each time the log starts again from the beginning, which it
    /// does at the first write after a checkpoint that copied all of it.
    fn log_restarts(dir: &Path) -> u32 {
        let header = std::fs::read(dir.join("links.sqlite-wal")).unwrap();
        u32::from_be_bytes(header[12..16].try_into().unwrap())
    }

    /// After a pause the log has been checkpointed and started again from its
    /// beginning: the write after the pause carries neither the checkpoint
    /// SQLite would run at 1 000 pages nor the restart's sync. Writes without
    /// a pause are not checkpointed under, nor too few writes.
    #[tokio::test]
    async fn the_log_is_checkpointed_in_a_pause() {
        let dir = tempfile::tempdir().unwrap();
        let b = Arc::new(SqliteBackend::open(dir.path()).unwrap());
        // Only the quiet checkpoints: SQLite's own would restart the log too.
        b.lock()
            .execute_batch("PRAGMA wal_autocheckpoint = 0;")
            .unwrap();
        let entry = |n: usize| Entry {
            pk: format!("k{n}"),
            sk: "-".into(),
            value: "x".repeat(200),
            expires_at: None,
        };
        let before = {
            b.put(&entry(0)).await.unwrap();
            log_restarts(dir.path())
        };
        let task = b
            .spawn_quiet_checkpoints(Duration::from_millis(200), 64)
            .unwrap();
        // Too few writes: a pause does not checkpoint them.
        for n in 1..30 {
            b.put(&entry(n)).await.unwrap();
        }
        tokio::time::sleep(Duration::from_millis(700)).await;
        assert_eq!(log_restarts(dir.path()), before, "checkpointed 30 writes");
        // A write every 2 ms is not a pause: the log goes on.
        for n in 30..100 {
            b.put(&entry(n)).await.unwrap();
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        assert_eq!(
            log_restarts(dir.path()),
            before,
            "checkpointed while writing"
        );
        // A pause: checkpointed within it, and the log started again within
        // it too (by the checkpoint's own write), not by the next write.
        tokio::time::sleep(Duration::from_millis(700)).await;
        let restarted = log_restarts(dir.path());
        assert!(restarted > before, "not checkpointed in the pause");
        b.put(&entry(100)).await.unwrap();
        assert_eq!(log_restarts(dir.path()), restarted);
        assert_eq!(
            b.get("k100", "-", 0).await.unwrap().unwrap().value.len(),
            200
        );
        // Dropping the backend ends the task.
        drop(b);
        tokio::time::timeout(Duration::from_secs(1), task)
            .await
            .unwrap()
            .unwrap();
    }

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
