//! Group commit: concurrent sends and deletes share one transaction, so one
//! fsync makes many of them durable.
//!
//! A caller puts its write in line and waits. When no commit is running it
//! starts one on the blocking pool: the committer takes everything in line
//! (at most [`MAX_GROUP`]), applies it in one `BEGIN IMMEDIATE` transaction,
//! commits (with `synchronous=FULL`, one fsync of the log), and only then
//! answers each caller. Writes that arrived during that commit go into the
//! next one, started at once. A lone write waits for nothing (no timer);
//! under load each fsync carries everything that queued up behind the last.
//!
//! A failed transaction fails every write in it (each caller gets the error:
//! the intake answers 503, the worker retries its acknowledgement); nothing
//! of it is applied.
//!
//! Sends leased to a waiting loop (`Receiver::send_leased`) are handed out
//! between the transaction's last statement and its COMMIT, so the worker
//! decodes and plans the message while the log syncs; it writes nothing
//! anywhere until [`Inbox::durable`](crate::queue::port::Inbox::durable)
//! says the commit is done (a [`Gate`]). Should the COMMIT fail, the
//! message was never queued: the loop that took it is told so, the leases
//! nobody took are withdrawn, and the sender gets the error as before.

use super::base::{lock, message_id, ms, token, unavailable, Fail};
use super::store::{
    EmbeddedQueue, EmbeddedSettings, Inner, Leased, BUSY_TIMEOUT, CHECKPOINT_FRAMES,
};
pub(super) use super::store::{Write, Written};
use crate::queue::port::{InMessage, QueueError, SendReceipt};
use rusqlite::wal::CheckpointMode;
use rusqlite::{params, OptionalExtension, TransactionBehavior};
use std::sync::atomic::Ordering;
use tokio::sync::{oneshot, watch};

/// The most writes one transaction carries.
pub(super) const MAX_GROUP: usize = 256;

pub(super) type Answer = oneshot::Sender<Result<Written, QueueError>>;

/// The leases of one transaction, handed out before its COMMIT, and how
/// their takers learn the COMMIT's outcome. Dropped unsettled (a committer
/// that panicked: its transaction rolled back), it settles as failed.
struct Gate<'a> {
    inner: &'a Inner,
    receipts: Vec<String>,
    outcome: Option<watch::Sender<Option<Result<(), QueueError>>>>,
}

impl<'a> Gate<'a> {
    /// Registers `leased` as pending, then hands them out and wakes a loop
    /// for each.
    fn hand_out(inner: &'a Inner, leased: Vec<Leased>) -> Self {
        let (tx, rx) = watch::channel(None);
        let receipts: Vec<String> = leased
            .iter()
            .filter_map(|l| l.message.receipt.clone())
            .collect();
        // Pending before handed out: whoever takes a lease finds its gate.
        {
            let mut pending = lock(&inner.pending);
            for r in &receipts {
                pending.insert(r.clone(), rx.clone());
            }
        }
        let n = leased.len();
        lock(&inner.leased).extend(leased);
        wake_receivers(inner, n);
        Gate {
            inner,
            receipts,
            outcome: Some(tx),
        }
    }

    /// Tells the takers `result`, once (a second call does nothing).
    fn settle(&mut self, result: Result<(), QueueError>) {
        let Some(tx) = self.outcome.take() else {
            return;
        };
        let ok = result.is_ok();
        if !ok {
            // Not taken yet: never handed out now. Taken: the taker's
            // `durable` sees the error (and drops the pending entry).
            let mut leased = lock(&self.inner.leased);
            let mut pending = lock(&self.inner.pending);
            leased.retain(|l| match &l.message.receipt {
                Some(r) if self.receipts.contains(r) => {
                    pending.remove(r);
                    false
                }
                _ => true,
            });
        }
        tx.send_replace(Some(result));
        if ok {
            let mut pending = lock(&self.inner.pending);
            for r in &self.receipts {
                pending.remove(r);
            }
        }
    }
}

impl Drop for Gate<'_> {
    fn drop(&mut self) {
        self.settle(Err(unavailable(
            "the commit holding this send was abandoned",
        )));
    }
}

/// Wakes a waiting receiver for each of `n` messages it can take now (when
/// the host asked the queue to, `Receiver::wake_receivers_with`).
fn wake_receivers(inner: &Inner, n: usize) {
    if let Some(wake) = inner.waker.get() {
        for _ in 0..n {
            wake.notify_one();
        }
    }
}

impl EmbeddedQueue {
    /// Puts `w` in line; returns once the transaction holding it committed.
    pub(super) async fn write(&self, w: Write) -> Result<Written, QueueError> {
        let (tx, rx) = oneshot::channel();
        let start = {
            let mut line = lock(&self.inner.line);
            line.waiting.push((w, tx));
            !std::mem::replace(&mut line.running, true)
        };
        if start {
            let inner = self.inner.clone();
            tokio::task::spawn_blocking(move || commit_while_waiting(&inner));
        }
        rx.await
            .map_err(|_| unavailable("the commit holding this write was abandoned"))?
    }

    /// (transactions committed, writes they carried) since the queue was opened.
    pub fn group_commits(&self) -> (u64, u64) {
        let line = lock(&self.inner.line);
        (line.commits, line.writes)
    }
}

/// Clears `running` however the committer ends; a committer that panicked
/// answers what is still in line with an error instead of leaving it waiting.
struct Running<'a>(&'a Inner);

impl Drop for Running<'_> {
    fn drop(&mut self) {
        let mut line = lock(&self.0.line);
        line.running = false;
        if std::thread::panicking() {
            for (_, answer) in line.waiting.drain(..) {
                let _ = answer.send(Err(unavailable("the committer failed")));
            }
        }
    }
}

fn commit_while_waiting(inner: &Inner) {
    let running = Running(inner);
    loop {
        let group: Vec<(Write, Answer)> = {
            let mut line = lock(&inner.line);
            if line.waiting.is_empty() {
                // `running` is cleared under this same lock: a write put in
                // line after this point starts a new committer.
                line.running = false;
                std::mem::forget(running);
                return;
            }
            let n = line.waiting.len().min(MAX_GROUP);
            line.waiting.drain(..n).collect()
        };
        let (writes, answers): (Vec<Write>, Vec<Answer>) = group.into_iter().unzip();
        let result = {
            let mut conn = lock(&inner.conn);
            apply(&mut conn, inner, writes)
        };
        match result {
            Ok((done, queued)) => {
                {
                    let mut line = lock(&inner.line);
                    line.commits += 1;
                    line.writes += done.len() as u64;
                }
                // The sends not leased are in the table now.
                wake_receivers(inner, queued);
                for (answer, d) in answers.into_iter().zip(done) {
                    let _ = answer.send(Ok(d));
                }
            }
            Err(Fail(e)) => {
                for answer in answers {
                    let _ = answer.send(Err(e.clone()));
                }
            }
        }
        checkpoint_if_due(inner);
    }
}

/// Checkpoints the log (`PASSIVE`) once it holds [`CHECKPOINT_FRAMES`]
/// frames. Called after a transaction's writes were answered: they do not
/// wait for it. Writes put in line meanwhile do, as they waited for
/// SQLite's automatic checkpoint inside the COMMIT before (see
/// `store::count_log_frames`). A failed checkpoint is tried again after the
/// next commit; nothing depends on it but the size of the log.
///
/// A checkpoint that copied the whole log also restarts it here when no
/// write is in line: the next transaction to write frames writes the log
/// from its start, and syncs the log's new header before its own frames.
/// Done by a write of the committer's own, that sync and its commit's are
/// paid now, not by the next sender's 202. With writes in line, the first of
/// them restarts the log (one header sync, not a transaction more).
fn checkpoint_if_due(inner: &Inner) {
    if inner.log_frames.load(Ordering::Relaxed) < CHECKPOINT_FRAMES {
        return;
    }
    let mut conn = lock(&inner.conn);
    let done = conn
        .wal_checkpoint_v2(Some(rusqlite::MAIN_DB), CheckpointMode::PASSIVE)
        .and_then(|(log, copied)| {
            // `conn` then `line`: nothing takes them the other way round.
            if log == copied && lock(&inner.line).waiting.is_empty() {
                restart_log(&mut conn)?;
            }
            Ok((log, copied))
        });
    match done {
        Ok((log, copied)) => tracing::trace!(log, copied, "queue log checkpointed"),
        Err(e) => tracing::debug!(error = %e, "queue log checkpoint failed"),
    }
}

/// Writes one frame (the schema version, rewritten unchanged, in one
/// transaction with its read, so another process's migration cannot come
/// between them), which starts the log over after a checkpoint that copied
/// all of it. Gives up at once when another process holds the write lock:
/// the next commit restarts the log then.
fn restart_log(conn: &mut rusqlite::Connection) -> rusqlite::Result<()> {
    conn.busy_timeout(std::time::Duration::ZERO)?;
    let restarted = (|| {
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let version: i64 = tx.pragma_query_value(None, "user_version", |r| r.get(0))?;
        tx.pragma_update(None, "user_version", version)?;
        tx.commit()
    })();
    conn.busy_timeout(BUSY_TIMEOUT)?;
    restarted
}

/// Applies `writes` in one transaction, in line order, handing the messages
/// their sends leased out before the COMMIT (see [`Gate`]); returns each
/// write's result and how many sends were queued without a lease.
fn apply(
    conn: &mut rusqlite::Connection,
    inner: &Inner,
    writes: Vec<Write>,
) -> Result<(Vec<Written>, usize), Fail> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let (out, leased) = stage(&tx, &inner.settings, writes)?;
    let queued = out
        .iter()
        .filter(|w| matches!(w, Written::Sent(r) if !r.duplicate))
        .count()
        .saturating_sub(leased.len());
    let gate = (!leased.is_empty()).then(|| Gate::hand_out(inner, leased));
    let committed = tx.commit();
    if let Some(mut gate) = gate {
        gate.settle(match &committed {
            Ok(()) => Ok(()),
            Err(e) => Err(unavailable(format_args!("the commit failed: {e}"))),
        });
    }
    committed?;
    Ok((out, queued))
}

/// The statements of `writes`, in line order, in `tx`; each one's result
/// and the messages their sends leased.
fn stage(
    tx: &rusqlite::Transaction<'_>,
    settings: &EmbeddedSettings,
    writes: Vec<Write>,
) -> Result<(Vec<Written>, Vec<Leased>), Fail> {
    // After the lock: BEGIN IMMEDIATE may wait up to the busy timeout.
    let now = settings.now_ms();
    let dedup = !settings.dedup_window.is_zero();
    if writes.iter().any(|w| matches!(w, Write::Send(..))) {
        tx.prepare_cached("DELETE FROM dedup WHERE sent_at <= ?1")?
            .execute([now.saturating_sub(ms(settings.dedup_window))])?;
    }
    let mut out = Vec::with_capacity(writes.len());
    let mut leased = Vec::new();
    for w in writes {
        match w {
            Write::Send(m, attributes, body, lease) => {
                // A send earlier in this transaction is in the table already.
                let seen: Option<String> = if dedup {
                    tx.prepare_cached("SELECT message_id FROM dedup WHERE dedup_id = ?1")?
                        .query_row([&m.dedup_id], |r| r.get(0))
                        .optional()?
                } else {
                    None
                };
                if let Some(id) = seen {
                    out.push(Written::Sent(SendReceipt {
                        message_id: id,
                        duplicate: true,
                    }));
                    continue;
                }
                let id = message_id(now);
                // Leased only as its group's head: with no message of its
                // group queued, in flight or delayed (FIFO within a group).
                let lease = match lease {
                    Some(text) => {
                        let alone = !tx
                            .prepare_cached(
                                "SELECT EXISTS (SELECT 1 FROM messages WHERE group_id = ?1)",
                            )?
                            .query_row([&m.group_id], |r| r.get::<_, bool>(0))?;
                        alone.then_some(text)
                    }
                    None => None,
                };
                match &lease {
                    None => tx
                        .prepare_cached(
                            "INSERT INTO messages
                                (id, group_id, dedup_id, body, attributes, enqueued_at, visible_at)
                             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6)",
                        )?
                        .execute(params![id, m.group_id, m.dedup_id, body, attributes, now])?,
                    Some(text) => {
                        let receipt = token();
                        let hidden_until = now.saturating_add(ms(settings.visibility_timeout));
                        let n = tx
                            .prepare_cached(
                                "INSERT INTO messages
                                    (id, group_id, dedup_id, body, attributes, enqueued_at,
                                     visible_at, receive_count, receipt)
                                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 1, ?8)",
                            )?
                            .execute(params![
                                id,
                                m.group_id,
                                m.dedup_id,
                                body,
                                attributes,
                                now,
                                hidden_until,
                                receipt
                            ])?;
                        leased.push(Leased {
                            message: InMessage {
                                id: id.clone(),
                                group_id: Some(m.group_id.clone()),
                                dedup_id: Some(m.dedup_id.clone()),
                                body: text.clone(),
                                receive_count: 1,
                                receipt: Some(receipt),
                            },
                            hidden_until,
                        });
                        n
                    }
                };
                if dedup {
                    tx.prepare_cached(
                        "INSERT INTO dedup (dedup_id, message_id, sent_at) VALUES (?1, ?2, ?3)",
                    )?
                    .execute(params![m.dedup_id, id, now])?;
                }
                out.push(Written::Sent(SendReceipt {
                    message_id: id,
                    duplicate: false,
                }));
            }
            Write::Delete(receipt) => {
                let n = tx
                    .prepare_cached("DELETE FROM messages WHERE receipt = ?1")?
                    .execute([receipt])?;
                out.push(Written::Deleted(n == 1));
            }
        }
    }
    Ok((out, leased))
}
