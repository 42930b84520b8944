//! What operators see and do: counts, the dead-letter table, redrive.

use super::base::{count, timestamp, unavailable, Fail};
use super::store::EmbeddedQueue;
use super::stored;
use crate::queue::port::QueueError;
use rusqlite::{params, OptionalExtension, TransactionBehavior};
use std::time::Duration;

/// A message in the dead-letter table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeadLetter {
    /// The message id it had in the queue (kept on redrive).
    pub id: String,
    pub group_id: String,
    pub dedup_id: String,
    pub body: String,
    pub reason: String,
    pub receive_count: u32,
    pub enqueued_at: jiff::Timestamp,
    pub dead_at: jiff::Timestamp,
}

/// A snapshot of the queue.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct QueueStats {
    /// Visible now (including messages waiting behind their group's head).
    pub visible: u64,
    /// Received and not yet acked, within their visibility timeout.
    pub in_flight: u64,
    /// Released or delayed with a wait that has not passed yet.
    pub delayed: u64,
    /// In the dead-letter table.
    pub dead: u64,
    /// Groups with at least one queued message.
    pub groups: u64,
    /// Age of the oldest visible or in-flight message.
    pub oldest_age: Option<Duration>,
}

impl EmbeddedQueue {
    /// Counts, as one consistent snapshot.
    pub async fn stats(&self) -> Result<QueueStats, QueueError> {
        self.call(|conn, settings| {
            let now = settings.now_ms();
            let tx = conn.transaction()?;
            let (visible, in_flight, delayed, groups, oldest) = tx.query_row(
                "SELECT COALESCE(SUM(visible_at <= ?1), 0),
                        COALESCE(SUM(visible_at > ?1 AND receipt IS NOT NULL), 0),
                        COALESCE(SUM(visible_at > ?1 AND receipt IS NULL), 0),
                        COUNT(DISTINCT group_id),
                        MIN(CASE WHEN visible_at <= ?1 OR receipt IS NOT NULL
                                 THEN enqueued_at END)
                   FROM messages",
                [now],
                |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, i64>(1)?,
                        r.get::<_, i64>(2)?,
                        r.get::<_, i64>(3)?,
                        r.get::<_, Option<i64>>(4)?,
                    ))
                },
            )?;
            let dead: i64 = tx.query_row("SELECT COUNT(*) FROM dead", [], |r| r.get(0))?;
            tx.commit()?;
            let n = |v: i64| u64::try_from(v).unwrap_or(0);
            Ok(QueueStats {
                visible: n(visible),
                in_flight: n(in_flight),
                delayed: n(delayed),
                dead: n(dead),
                groups: n(groups),
                oldest_age: oldest
                    .map(|at| Duration::from_millis(u64::try_from(now - at).unwrap_or(0))),
            })
        })
        .await
    }

    /// Whether the file takes writes now: a connection of its own takes the
    /// write lock (waiting at most `wait`) and lets it go. For health checks.
    pub async fn probe_writable(&self, wait: Duration) -> Result<(), QueueError> {
        let path = self.inner.path.clone();
        tokio::task::spawn_blocking(move || {
            let at = |e: rusqlite::Error| unavailable(format_args!("{}: {e}", path.display()));
            let conn = rusqlite::Connection::open_with_flags(
                &path,
                rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE
                    | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
            )
            .map_err(at)?;
            conn.busy_timeout(wait).map_err(at)?;
            conn.execute_batch("BEGIN IMMEDIATE; ROLLBACK;").map_err(at)
        })
        .await
        .map_err(unavailable)?
    }

    /// Up to `limit` dead letters, newest first.
    pub async fn dead_list(&self, limit: usize) -> Result<Vec<DeadLetter>, QueueError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.call(move |conn, _| {
            let mut stmt = conn.prepare_cached(&format!(
                "SELECT {DEAD_COLUMNS} FROM dead ORDER BY dseq DESC LIMIT ?1"
            ))?;
            let rows = stmt.query_map([limit], dead_row)?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
        .await
    }

    /// One dead letter by its message id.
    pub async fn dead_get(&self, id: &str) -> Result<Option<DeadLetter>, QueueError> {
        let id = id.to_owned();
        self.call(move |conn, _| {
            Ok(conn
                .prepare_cached(&format!("SELECT {DEAD_COLUMNS} FROM dead WHERE id = ?1"))?
                .query_row([&id], dead_row)
                .optional()?)
        })
        .await
    }

    /// Moves one dead letter (`Some(id)`) or all of them (`None`, oldest dead
    /// first) back to the queue: at the end of their group, `receive_count`
    /// 0, enqueued now, same message id, deduplication bypassed. Returns how
    /// many moved (0 for an unknown id).
    pub async fn redrive(&self, id: Option<&str>) -> Result<usize, QueueError> {
        let id = id.map(str::to_owned);
        self.call(move |conn, settings| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            // After the lock: BEGIN IMMEDIATE may wait up to the busy timeout.
            let now = settings.now_ms();
            let moved = tx.execute(
                "INSERT INTO messages
                        (id, group_id, dedup_id, body, attributes,
                         enqueued_at, visible_at, receive_count)
                 SELECT id, group_id, dedup_id, body, attributes, ?2, ?2, 0
                   FROM dead WHERE ?1 IS NULL OR id = ?1 ORDER BY dseq",
                params![id, now],
            )?;
            let removed = tx.execute("DELETE FROM dead WHERE ?1 IS NULL OR id = ?1", [&id])?;
            if moved != removed {
                return Err(Fail(unavailable(format_args!(
                    "redrive moved {moved} but removed {removed} dead letters"
                ))));
            }
            tx.commit()?;
            Ok(moved)
        })
        .await
    }
}

const DEAD_COLUMNS: &str =
    "id, group_id, dedup_id, body, reason, receive_count, enqueued_at, dead_at";

fn dead_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<DeadLetter> {
    Ok(DeadLetter {
        id: r.get(0)?,
        group_id: r.get(1)?,
        dedup_id: r.get(2)?,
        // Shown, not fatal to the list: the dead letter's reason says why.
        body: stored::read(r.get_ref(3)?)
            .unwrap_or_else(|e| format!("(the stored body cannot be read: {e})")),
        reason: r.get(4)?,
        receive_count: count(r.get(5)?),
        enqueued_at: timestamp(r.get(6)?),
        dead_at: timestamp(r.get(7)?),
    })
}
