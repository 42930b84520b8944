//! The journal of `relay serve`: `<data-dir>/journal.sqlite`, its own file
//! (never the queue's write lock). [`SqliteJournal::record`] hands the row to
//! a writer thread through a bounded channel and returns at once; the thread
//! writes what has arrived in one transaction, and prunes by age
//! ([`JournalSettings::retention`]) and by count ([`JournalSettings::max_rows`])
//! every [`PRUNE_EVERY`] rows and at open.

use super::{CallMade, ConnectionHealth, Delivery, JournalSink};
use rusqlite::{params, params_from_iter, Connection, OptionalExtension};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Rows between prunes.
pub const PRUNE_EVERY: u64 = 500;
/// Rows waiting for the writer before new ones are dropped.
const CHANNEL: usize = 8192;

#[derive(Clone, Debug)]
pub struct JournalSettings {
    /// Rows older than this are deleted (default 30 days).
    pub retention: Duration,
    /// At most this many rows are kept, the newest (default 200 000).
    pub max_rows: u64,
}

impl Default for JournalSettings {
    fn default() -> Self {
        Self {
            retention: Duration::from_secs(30 * 24 * 3600),
            max_rows: 200_000,
        }
    }
}

enum Msg {
    Row(Box<Delivery>),
    Flush(std::sync::mpsc::Sender<()>),
}

/// Filters of the message feed (all optional; `key` matches the source
/// record or a target record).
#[derive(Clone, Debug, Default)]
pub struct FeedQuery {
    pub key: Option<String>,
    pub endpoint: Option<String>,
    pub event: Option<String>,
    pub outcome: Option<String>,
    pub since_ms: Option<i64>,
    pub until_ms: Option<i64>,
    /// Only rows newer than this id (the live feed's next page).
    pub after_id: Option<i64>,
    pub limit: usize,
}

pub struct SqliteJournal {
    tx: SyncSender<Msg>,
    read: Mutex<Connection>,
    health: Arc<Mutex<BTreeMap<String, ConnectionHealth>>>,
    dropped: Arc<std::sync::atomic::AtomicU64>,
    path: PathBuf,
}

fn open_db(path: &Path) -> rusqlite::Result<Connection> {
    let db = Connection::open(path)?;
    db.busy_timeout(Duration::from_millis(500))?;
    db.execute_batch(
        "PRAGMA journal_mode = WAL;
         PRAGMA synchronous = NORMAL;
         CREATE TABLE IF NOT EXISTS deliveries (
             id            INTEGER PRIMARY KEY AUTOINCREMENT,
             at_ms         INTEGER NOT NULL,
             received_at   TEXT NOT NULL,
             message_id    TEXT NOT NULL,
             endpoint      TEXT NOT NULL,
             event         TEXT NOT NULL,
             event_type    TEXT NOT NULL,
             delivery_id   TEXT NOT NULL,
             change_id     TEXT NOT NULL,
             source_key    TEXT NOT NULL,
             origin        TEXT NOT NULL,
             receive_count INTEGER NOT NULL,
             outcome       TEXT NOT NULL,
             reason        TEXT NOT NULL,
             rules         TEXT NOT NULL,
             targets       TEXT NOT NULL,
             calls         TEXT NOT NULL,
             duration_ms   INTEGER NOT NULL,
             dead_lettered INTEGER NOT NULL,
             what          TEXT NOT NULL
         );
         CREATE INDEX IF NOT EXISTS deliveries_at ON deliveries (at_ms);
         CREATE INDEX IF NOT EXISTS deliveries_key ON deliveries (source_key);",
    )?;
    Ok(db)
}

const COLUMNS: &str = "id, at_ms, received_at, message_id, endpoint, event, event_type, delivery_id, change_id, source_key, origin, receive_count, outcome, reason, rules, targets, calls, duration_ms, dead_lettered, what";

fn row_to_delivery(r: &rusqlite::Row<'_>) -> rusqlite::Result<Delivery> {
    let list = |s: String| -> Vec<String> {
        s.split(',')
            .filter(|x| !x.is_empty())
            .map(str::to_owned)
            .collect()
    };
    let calls: String = r.get(16)?;
    Ok(Delivery {
        id: r.get(0)?,
        at_ms: r.get(1)?,
        received_at: r.get(2)?,
        message_id: r.get(3)?,
        endpoint: r.get(4)?,
        event: r.get(5)?,
        event_type: r.get(6)?,
        delivery_id: r.get(7)?,
        change_id: r.get(8)?,
        source_key: r.get(9)?,
        origin: r.get(10)?,
        receive_count: r.get(11)?,
        outcome: r.get(12)?,
        reason: r.get(13)?,
        rules: list(r.get(14)?),
        targets: list(r.get(15)?),
        calls: serde_json::from_str::<Vec<CallMade>>(&calls).unwrap_or_default(),
        duration_ms: r.get::<_, i64>(17)? as u64,
        dead_lettered: r.get::<_, i64>(18)? != 0,
        what: r.get(19)?,
    })
}

fn insert(db: &mut Connection, rows: &[Box<Delivery>]) -> rusqlite::Result<()> {
    let tx = db.transaction()?;
    {
        let mut st = tx.prepare_cached(
            "INSERT INTO deliveries (at_ms, received_at, message_id, endpoint, event, event_type, delivery_id, change_id, source_key, origin, receive_count, outcome, reason, rules, targets, calls, duration_ms, dead_lettered, what)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19)",
        )?;
        for d in rows {
            st.execute(params![
                d.at_ms,
                d.received_at,
                d.message_id,
                d.endpoint,
                d.event,
                d.event_type,
                d.delivery_id,
                d.change_id,
                d.source_key,
                d.origin,
                d.receive_count,
                d.outcome,
                d.reason,
                d.rules.join(","),
                d.targets.join(","),
                serde_json::to_string(&d.calls).unwrap_or_else(|_| "[]".into()),
                d.duration_ms as i64,
                d.dead_lettered as i64,
                d.what,
            ])?;
        }
    }
    tx.commit()
}

/// Deletes rows older than the retention and beyond the size bound.
fn prune(db: &Connection, s: &JournalSettings, now_ms: i64) -> rusqlite::Result<usize> {
    let cutoff = now_ms - s.retention.as_millis() as i64;
    let old = db.execute("DELETE FROM deliveries WHERE at_ms < ?1", [cutoff])?;
    let over = db.execute(
        "DELETE FROM deliveries WHERE id <= (SELECT MAX(id) FROM deliveries) - ?1",
        [s.max_rows as i64],
    )?;
    Ok(old + over)
}

fn writer(
    mut db: Connection,
    rx: Receiver<Msg>,
    settings: JournalSettings,
    dropped: Arc<std::sync::atomic::AtomicU64>,
) {
    let mut since_prune = 0u64;
    while let Ok(first) = rx.recv() {
        let mut rows = Vec::new();
        let mut flushes = Vec::new();
        let mut next = Some(first);
        while let Some(m) = next {
            match m {
                Msg::Row(d) => rows.push(d),
                Msg::Flush(done) => flushes.push(done),
            }
            next = if rows.len() >= 256 {
                None
            } else {
                rx.try_recv().ok()
            };
        }
        if !rows.is_empty() {
            if let Err(e) = insert(&mut db, &rows) {
                dropped.fetch_add(rows.len() as u64, std::sync::atomic::Ordering::Relaxed);
                crate::support::metrics::count_n("JournalDropped", &[], rows.len() as u64);
                tracing::warn!(error = %e, rows = rows.len(), "the journal could not be written; rows dropped (the messages are handled all the same)");
            }
            since_prune += rows.len() as u64;
        }
        if since_prune >= PRUNE_EVERY || !flushes.is_empty() {
            since_prune = 0;
            if let Err(e) = prune(&db, &settings, jiff::Timestamp::now().as_millisecond()) {
                tracing::warn!(error = %e, "could not prune the journal");
            }
        }
        for f in flushes {
            let _ = f.send(());
        }
    }
}

impl SqliteJournal {
    /// Opens (creating if needed) `<dir>/journal.sqlite`, prunes it and
    /// starts its writer thread.
    pub fn open(dir: &Path, settings: JournalSettings) -> Result<Self, String> {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let path = dir.join("journal.sqlite");
        let db = open_db(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        prune(&db, &settings, jiff::Timestamp::now().as_millisecond())
            .map_err(|e| format!("{}: {e}", path.display()))?;
        let read = open_db(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let (tx, rx) = sync_channel(CHANNEL);
        let dropped = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let d = dropped.clone();
        std::thread::Builder::new()
            .name("journal".into())
            .spawn(move || writer(db, rx, settings, d))
            .map_err(|e| format!("cannot start the journal's writer: {e}"))?;
        Ok(Self {
            tx,
            read: Mutex::new(read),
            health: Arc::default(),
            dropped,
            path,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Rows dropped so far (journal full or unwritable).
    pub fn dropped(&self) -> u64 {
        self.dropped.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Waits until everything recorded so far is written (and pruned).
    pub async fn flush(&self) {
        let (done, wait) = std::sync::mpsc::channel();
        if self.tx.send(Msg::Flush(done)).is_ok() {
            let _ = tokio::task::spawn_blocking(move || wait.recv_timeout(Duration::from_secs(10)))
                .await;
        }
    }

    fn read<T: Send + 'static>(
        self: &Arc<Self>,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> impl std::future::Future<Output = Result<T, String>> {
        let me = self.clone();
        async move {
            tokio::task::spawn_blocking(move || {
                let db = me.read.lock().unwrap_or_else(|e| e.into_inner());
                f(&db).map_err(|e| format!("the journal cannot be read: {e}"))
            })
            .await
            .map_err(|e| e.to_string())?
        }
    }

    /// The message feed: newest first.
    pub async fn feed(self: &Arc<Self>, q: FeedQuery) -> Result<Vec<Delivery>, String> {
        self.read(move |db| {
            let mut sql = format!("SELECT {COLUMNS} FROM deliveries WHERE 1 = 1");
            let mut args: Vec<rusqlite::types::Value> = Vec::new();
            if let Some(k) = q.key.filter(|k| !k.is_empty()) {
                sql.push_str(" AND (source_key = ? OR (',' || targets || ',') LIKE ?)");
                args.push(k.clone().into());
                args.push(format!("%,{k},%").into());
            }
            for (col, v) in [
                ("endpoint", q.endpoint),
                ("event", q.event),
                ("outcome", q.outcome),
            ] {
                if let Some(v) = v.filter(|v| !v.is_empty()) {
                    sql.push_str(&format!(" AND {col} = ?"));
                    args.push(v.into());
                }
            }
            for (cond, v) in [
                ("at_ms >= ?", q.since_ms),
                ("at_ms <= ?", q.until_ms),
                ("id > ?", q.after_id),
            ] {
                if let Some(v) = v {
                    sql.push_str(&format!(" AND {cond}"));
                    args.push(v.into());
                }
            }
            sql.push_str(" ORDER BY id DESC LIMIT ?");
            args.push((q.limit.clamp(1, 1000) as i64).into());
            let mut st = db.prepare(&sql)?;
            let rows = st.query_map(params_from_iter(args), row_to_delivery)?;
            rows.collect()
        })
        .await
    }

    pub async fn get(self: &Arc<Self>, id: i64) -> Result<Option<Delivery>, String> {
        self.read(move |db| {
            db.query_row(
                &format!("SELECT {COLUMNS} FROM deliveries WHERE id = ?1"),
                [id],
                row_to_delivery,
            )
            .optional()
        })
        .await
    }

    /// Every attempt about `key` or the records paired with it (in both
    /// directions), oldest first, and the keys of the pair.
    pub async fn conversation(
        self: &Arc<Self>,
        key: String,
    ) -> Result<(Vec<String>, Vec<Delivery>), String> {
        super::conversation(&key, |k| {
            self.feed(FeedQuery {
                key: Some(k),
                limit: 1000,
                ..FeedQuery::default()
            })
        })
        .await
    }

    /// Endpoints, events and outcomes seen (the feed's filter choices).
    pub async fn choices(self: &Arc<Self>) -> Result<[Vec<String>; 3], String> {
        self.read(|db| {
            let col = |c: &str| -> rusqlite::Result<Vec<String>> {
                let mut st = db.prepare(&format!(
                    "SELECT DISTINCT {c} FROM deliveries ORDER BY {c} LIMIT 100"
                ))?;
                let v = st.query_map([], |r| r.get(0))?;
                v.collect()
            };
            Ok([col("endpoint")?, col("event")?, col("outcome")?])
        })
        .await
    }

    pub async fn count(self: &Arc<Self>) -> Result<u64, String> {
        self.read(|db| {
            db.query_row("SELECT COUNT(*) FROM deliveries", [], |r| {
                r.get::<_, i64>(0)
            })
        })
        .await
        .map(|n| n as u64)
    }

    /// Last success and failure per connection since the process started.
    pub fn health(&self) -> Vec<ConnectionHealth> {
        self.health
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect()
    }

    fn note_health(&self, d: &Delivery) {
        let mut h = self.health.lock().unwrap_or_else(|e| e.into_inner());
        for c in d.calls.iter().filter(|c| !c.connection.is_empty()) {
            let e = h
                .entry(c.connection.clone())
                .or_insert_with(|| ConnectionHealth {
                    connection: c.connection.clone(),
                    ..ConnectionHealth::default()
                });
            e.calls += 1;
            match c.status {
                // A 404 on a lookup is an answer, not a failing system.
                Some(s) if (200..300).contains(&s) || s == 404 => e.last_success_ms = Some(d.at_ms),
                other => {
                    e.last_failure_ms = Some(d.at_ms);
                    e.last_failure = format!(
                        "{} {} {}",
                        other
                            .map(|s| s.to_string())
                            .or_else(|| c.error.clone())
                            .unwrap_or_default(),
                        c.method,
                        c.path
                    );
                }
            }
        }
    }
}

impl JournalSink for SqliteJournal {
    fn record(&self, d: Delivery) {
        self.note_health(&d);
        match self.tx.try_send(Msg::Row(Box::new(d))) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                self.dropped
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                crate::support::metrics::count("JournalDropped", &[]);
                tracing::warn!("the journal is behind or stopped; a row was dropped (the message is handled all the same)");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(key: &str, outcome: &str, at_ms: i64) -> Delivery {
        Delivery {
            at_ms,
            message_id: format!("m-{key}-{at_ms}"),
            endpoint: "jira".into(),
            event: "jira:issue_updated".into(),
            source_key: key.into(),
            outcome: outcome.into(),
            targets: vec!["INC0010001".into()],
            calls: vec![CallMade {
                connection: "servicenow".into(),
                method: "POST".into(),
                path: "/api/now/table/incident".into(),
                status: Some(if outcome == "dead" { 400 } else { 201 }),
                duration_ms: 3,
                error: None,
            }],
            what: "processed".into(),
            ..Delivery::default()
        }
    }

    #[tokio::test]
    async fn feed_filters_conversation_and_health() {
        // given
        let dir = tempfile::tempdir().unwrap();
        let j = Arc::new(SqliteJournal::open(dir.path(), JournalSettings::default()).unwrap());
        let now = jiff::Timestamp::now().as_millisecond();
        // when
        j.record(row("DEMO-1", "applied", now - 2));
        j.record(row("DEMO-2", "dead", now - 1));
        let mut back = row("INC0010001", "applied", now);
        back.endpoint = "servicenow".into();
        back.targets = vec!["DEMO-1".into()];
        j.record(back);
        j.flush().await;
        // then
        let all = j
            .feed(FeedQuery {
                limit: 10,
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(all.len(), 3);
        assert!(all[0].id > all[1].id, "newest first");
        let dead = j
            .feed(FeedQuery {
                outcome: Some("dead".into()),
                limit: 10,
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(dead.len(), 1);
        assert_eq!(dead[0].source_key, "DEMO-2");
        assert_eq!(dead[0].calls[0].status, Some(400));
        let window = j
            .feed(FeedQuery {
                since_ms: Some(now - 1),
                until_ms: Some(now - 1),
                limit: 10,
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(window.len(), 1, "a time range");
        assert_eq!(window[0].source_key, "DEMO-2");
        let newer = j
            .feed(FeedQuery {
                after_id: Some(all[1].id),
                limit: 10,
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(newer.len(), 1);
        let (keys, conv) = j.conversation("DEMO-1".into()).await.unwrap();
        assert!(keys.contains(&"INC0010001".to_owned()));
        // DEMO-1's own row, the ServiceNow event about INC0010001, and DEMO-2
        // (which also targeted INC0010001 in this made-up data).
        assert_eq!(conv.len(), 3);
        assert!(conv.windows(2).all(|w| w[0].id < w[1].id), "oldest first");
        let h = j.health();
        assert_eq!(h.len(), 1);
        assert!(h[0].last_success_ms.is_some() && h[0].last_failure_ms.is_some());
        assert!(h[0].last_failure.starts_with("400 POST"), "{h:?}");
    }

    #[tokio::test]
    async fn retention_and_size_bound_are_enforced() {
        // given: 30 days' retention, at most 10 rows
        let dir = tempfile::tempdir().unwrap();
        let settings = JournalSettings {
            retention: Duration::from_secs(30 * 24 * 3600),
            max_rows: 10,
        };
        let j = Arc::new(SqliteJournal::open(dir.path(), settings.clone()).unwrap());
        let now = jiff::Timestamp::now().as_millisecond();
        let day = 24 * 3600 * 1000;
        // when: two rows past the retention, then 25 fresh ones
        j.record(row("OLD-1", "applied", now - 31 * day));
        j.record(row("OLD-2", "applied", now - 40 * day));
        for i in 0..25 {
            j.record(row(&format!("NEW-{i}"), "applied", now - 1000 + i));
        }
        j.flush().await;
        // then: the newest 10 are kept, nothing past the retention
        assert_eq!(j.count().await.unwrap(), 10);
        let kept = j
            .feed(FeedQuery {
                limit: 100,
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(kept[0].source_key, "NEW-24");
        assert_eq!(kept[9].source_key, "NEW-15");
        // and a row already past the retention is gone at the next prune or open
        j.record(row("OLD-3", "applied", now - 31 * day));
        j.flush().await;
        assert!(j
            .feed(FeedQuery {
                key: Some("OLD-3".into()),
                limit: 10,
                ..Default::default()
            })
            .await
            .unwrap()
            .is_empty());
        drop(j);
        let again = Arc::new(SqliteJournal::open(dir.path(), settings).unwrap());
        assert_eq!(again.count().await.unwrap(), 10);
    }

    #[tokio::test]
    async fn an_unwritable_journal_drops_rows_without_blocking() {
        // given: another connection holds the write lock
        let dir = tempfile::tempdir().unwrap();
        let j = Arc::new(SqliteJournal::open(dir.path(), JournalSettings::default()).unwrap());
        let blocker = Connection::open(dir.path().join("journal.sqlite")).unwrap();
        blocker.execute_batch("BEGIN IMMEDIATE").unwrap();
        // when
        let started = std::time::Instant::now();
        for i in 0..50 {
            j.record(row(&format!("K-{i}"), "applied", 1));
        }
        let took = started.elapsed();
        j.flush().await;
        // then: recording did not wait for the database; the rows were dropped and counted
        assert!(
            took < Duration::from_millis(200),
            "record() waited {took:?}"
        );
        assert_eq!(j.dropped(), 50);
        blocker.execute_batch("ROLLBACK").unwrap();
        j.record(row(
            "K-after",
            "applied",
            jiff::Timestamp::now().as_millisecond(),
        ));
        j.flush().await;
        assert_eq!(j.count().await.unwrap(), 1);
    }
}
