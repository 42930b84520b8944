//! The receiving side: FIFO heads of distinct groups, receipts,
//! acknowledgement, release, delay and dead-lettering.

use super::base::{count, lock, ms, token, Fail};
use super::store::{EmbeddedQueue, Leased};
use super::stored::{self, Stored};
use crate::queue::port::{InMessage, Inbox, OutgoingMessage, QueueError, Receiver, SendReceipt};
use async_trait::async_trait;
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use std::collections::HashSet;
use std::time::Duration;

/// The visible heads of their groups, oldest first (`?1` now, `?2` how many).
/// It walks the queue in order on a small index and stops at `?2`: a message
/// is its group's head when no older one of its group is queued. (Finding
/// every group's head first read the whole table on each receive: 5.6 ms with
/// 10 000 groups queued, while the committer waited for the connection.)
pub(super) const HEADS: &str = "
    SELECT m.seq, m.id, m.group_id, m.dedup_id, m.body, m.receive_count
      FROM messages m INDEXED BY messages_fifo
     WHERE m.visible_at <= ?1
       AND NOT EXISTS (SELECT 1 FROM messages p WHERE p.group_id = m.group_id AND p.seq < m.seq)
     ORDER BY m.seq
     LIMIT ?2";

#[async_trait]
impl Receiver for EmbeddedQueue {
    /// Up to `max` messages: the visible heads of distinct groups, oldest
    /// first. Each gets `receive_count + 1`, a fresh receipt and is hidden for
    /// the visibility timeout. Messages over the receive budget are moved to
    /// the dead-letter table on the way (and their group's next message may be
    /// handed out in their place).
    ///
    /// Messages leased at their send (`send_leased`) come first, without a
    /// transaction: their commit made them received already. One whose lease
    /// is half gone is released instead (in this receive's transaction) and
    /// handed out again from the table, with a new receipt. Should that
    /// transaction fail, the fresh leases it took are kept for the next
    /// receive.
    async fn receive(&self, max: usize) -> Result<Vec<InMessage>, QueueError> {
        if max == 0 {
            return Ok(Vec::new());
        }
        let (fresh, stale) = self.take_leased(max);
        if !fresh.is_empty() && stale.is_empty() {
            return Ok(fresh.into_iter().map(|l| l.message).collect());
        }
        let leased: Vec<InMessage> = fresh.iter().map(|l| l.message.clone()).collect();
        let received = self
            .call(move |conn, settings| {
                let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
                // After the lock: BEGIN IMMEDIATE may wait up to the busy timeout,
                // and a visibility counted from before it would end early (two
                // loops working on one message).
                let now = settings.now_ms();
                for receipt in &stale {
                    release_tx(&tx, receipt, now)?;
                }
                let hidden_until = now.saturating_add(ms(settings.visibility_timeout));
                // The leased ones' groups are in flight: the table's heads are others.
                let mut out = leased;
                let mut taken: HashSet<String> = HashSet::new();
                loop {
                    let limit = i64::try_from(max + taken.len()).unwrap_or(i64::MAX);
                    let heads = {
                        let mut stmt = tx.prepare_cached(HEADS)?;
                        let rows = stmt.query_map(params![now, limit], |r| {
                            Ok((
                                r.get::<_, i64>(0)?,
                                r.get::<_, String>(1)?,
                                r.get::<_, String>(2)?,
                                r.get::<_, String>(3)?,
                                // A body that does not unpack is dead-lettered below,
                                // not an error that would stop every receive.
                                stored::read(r.get_ref(4)?),
                                r.get::<_, i64>(5)?,
                            ))
                        })?;
                        rows.collect::<Result<Vec<_>, _>>()?
                    };
                    let mut dead_any = false;
                    for (seq, id, group_id, dedup_id, body, received) in heads {
                        if out.len() == max {
                            break;
                        }
                        if taken.contains(&group_id) {
                            continue;
                        }
                        let body = match body {
                            Ok(body) => body,
                            Err(e) => {
                                move_to_dead(&tx, seq, &format!("unreadable_body: {e}"), now)?;
                                dead_any = true;
                                continue;
                            }
                        };
                        let received = count(received);
                        if settings.max_receive_count > 0 && received >= settings.max_receive_count
                        {
                            let reason = format!(
                                "max_receive_count: received {received} times without success"
                            );
                            move_to_dead(&tx, seq, &reason, now)?;
                            dead_any = true;
                            continue;
                        }
                        let receipt = token();
                        tx.prepare_cached(
                            "UPDATE messages
                            SET receive_count = receive_count + 1, receipt = ?2, visible_at = ?3
                          WHERE seq = ?1",
                        )?
                        .execute(params![seq, receipt, hidden_until])?;
                        taken.insert(group_id.clone());
                        out.push(InMessage {
                            id,
                            group_id: Some(group_id),
                            dedup_id: Some(dedup_id),
                            body,
                            receive_count: received.saturating_add(1),
                            receipt: Some(receipt),
                        });
                    }
                    // A dead letter may have unblocked its group's next message.
                    if !dead_any || out.len() == max {
                        break;
                    }
                }
                tx.commit()?;
                Ok(out)
            })
            .await;
        if received.is_err() && !fresh.is_empty() {
            // Still leased to this process: the next receive hands them out,
            // instead of them waiting hidden for their lease to run out. (The
            // stale ones' release rolled back: they come back at its end.)
            let mut leased = self.leased();
            for l in fresh.into_iter().rev() {
                leased.push_front(l);
            }
        }
        received
    }

    /// Acknowledges (deletes) the message holding `receipt`. `Ok(false)` when
    /// the receipt is stale (the message was received again, released,
    /// delayed, dead-lettered or deleted since): nothing changes then.
    async fn delete(&self, receipt: &str) -> Result<bool, QueueError> {
        // Acknowledgements share their commit with concurrent ones (and sends).
        let written = self
            .write(super::commit::Write::Delete(receipt.to_owned()))
            .await;
        self.pending().remove(receipt);
        match written? {
            super::commit::Written::Deleted(d) => Ok(d),
            super::commit::Written::Sent(_) => {
                Err(super::base::unavailable("a delete answered as a send"))
            }
        }
    }

    /// Negative acknowledgement: the message holding `receipt` becomes
    /// visible again after `delay` (`ZERO` = now), keeping its place at the
    /// head of its group. `Ok(false)` when the receipt is stale.
    async fn release(&self, receipt: &str, delay: Duration) -> Result<bool, QueueError> {
        self.pending().remove(receipt);
        let receipt = receipt.to_owned();
        self.call(move |conn, settings| {
            Ok(release_tx(conn, &receipt, settings.now_ms().saturating_add(ms(delay)))? == 1)
        })
        .await
    }

    async fn send_leased(&self, message: OutgoingMessage) -> Result<SendReceipt, QueueError> {
        self.send_as(message, true).await
    }

    fn unclaimed(&self) -> Vec<String> {
        self.leased()
            .drain(..)
            .filter_map(|l| l.message.receipt)
            .collect()
    }

    fn visibility_timeout(&self) -> Duration {
        self.settings().visibility_timeout
    }

    fn wake_receivers_with(&self, wake: std::sync::Arc<tokio::sync::Notify>) -> bool {
        // The first host to ask; a second one wakes its own loops.
        self.inner.waker.set(wake).is_ok()
    }
}

impl EmbeddedQueue {
    fn leased(&self) -> std::sync::MutexGuard<'_, std::collections::VecDeque<Leased>> {
        lock(&self.inner.leased)
    }

    fn pending(
        &self,
    ) -> std::sync::MutexGuard<'_, std::collections::HashMap<String, super::store::Outcome>> {
        lock(&self.inner.pending)
    }

    /// Up to `max` leased messages with at least half their lease left, and
    /// the receipts of those with less (to be released: a loop could not
    /// finish one before its lease ran out and another loop got it).
    fn take_leased(&self, max: usize) -> (Vec<Leased>, Vec<String>) {
        let mut leased = self.leased();
        if leased.is_empty() {
            return (Vec::new(), Vec::new());
        }
        let half = ms(self.settings().visibility_timeout) / 2;
        let now = self.settings().now_ms();
        let (mut fresh, mut stale) = (Vec::new(), Vec::new());
        while fresh.len() < max {
            let Some(l) = leased.pop_front() else { break };
            if l.hidden_until.saturating_sub(now) >= half {
                fresh.push(l);
            } else if let Some(receipt) = l.message.receipt {
                stale.push(receipt);
            }
        }
        (fresh, stale)
    }
}

/// Moves the message `seq` to the dead table (same transaction).
pub(super) fn move_to_dead(
    tx: &rusqlite::Transaction<'_>,
    seq: i64,
    reason: &str,
    now: i64,
) -> Result<(), Fail> {
    tx.prepare_cached(
        "INSERT INTO dead (id, group_id, dedup_id, body, attributes, reason,
                           receive_count, enqueued_at, dead_at)
         SELECT id, group_id, dedup_id, body, attributes, ?2, receive_count, enqueued_at, ?3
           FROM messages WHERE seq = ?1",
    )?
    .execute(params![seq, reason, now])?;
    tx.prepare_cached("DELETE FROM messages WHERE seq = ?1")?
        .execute([seq])?;
    Ok(())
}

fn release_tx(conn: &Connection, receipt: &str, visible_at: i64) -> Result<usize, Fail> {
    Ok(conn
        .prepare_cached("UPDATE messages SET receipt = NULL, visible_at = ?2 WHERE receipt = ?1")?
        .execute(params![receipt, visible_at])?)
}

#[async_trait]
impl Inbox for EmbeddedQueue {
    /// Moves the message holding `msg.receipt` to the dead table with
    /// `reason`, atomically (one transaction: insert dead row, delete from
    /// the queue). Idempotent: a message already dead-lettered answers `Ok`.
    /// A stale receipt (the message is with another receiver) is refused, so
    /// the caller does not count it handled.
    async fn dead_letter(&self, msg: &InMessage, reason: &str) -> Result<(), QueueError> {
        let Some(receipt) = msg.receipt.clone() else {
            // A message that is not in the queue (an event the worker parked
            // in the link store and gives up on): written to the dead table
            // directly, once.
            // Packed here, not under the connection's lock.
            let body = Stored::pack(msg.body.clone());
            let id = msg.id.clone();
            let group_id = msg.group_id.clone().unwrap_or_else(|| "dead".into());
            let dedup_id = msg.dedup_id.clone().unwrap_or_else(|| id.clone());
            let receive_count = msg.receive_count;
            let reason = reason.to_owned();
            return self
                .call(move |conn, settings| {
                    let now = settings.now_ms();
                    let queued: bool = conn
                        .prepare_cached("SELECT EXISTS (SELECT 1 FROM messages WHERE id = ?1)")?
                        .query_row([&id], |r| r.get(0))?;
                    if queued {
                        return Err(Fail(QueueError::Rejected(format!(
                            "message {id} is queued; dead_letter needs its receipt"
                        ))));
                    }
                    conn.prepare_cached(
                        "INSERT OR IGNORE INTO dead (id, group_id, dedup_id, body, reason,
                                                     receive_count, enqueued_at, dead_at)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7)",
                    )?
                    .execute(params![
                        id,
                        group_id,
                        dedup_id,
                        body,
                        reason,
                        receive_count,
                        now
                    ])?;
                    Ok(())
                })
                .await;
        };
        let id = msg.id.clone();
        let reason = reason.to_owned();
        self.call(move |conn, settings| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            // After the lock: BEGIN IMMEDIATE may wait up to the busy timeout.
            let now = settings.now_ms();
            let seq: Option<i64> = tx
                .prepare_cached("SELECT seq FROM messages WHERE receipt = ?1")?
                .query_row([&receipt], |r| r.get(0))
                .optional()?;
            match seq {
                Some(seq) => move_to_dead(&tx, seq, &reason, now)?,
                None => {
                    let dead: bool = tx
                        .prepare_cached("SELECT EXISTS (SELECT 1 FROM dead WHERE id = ?1)")?
                        .query_row([&id], |r| r.get(0))?;
                    let queued: bool = tx
                        .prepare_cached("SELECT EXISTS (SELECT 1 FROM messages WHERE id = ?1)")?
                        .query_row([&id], |r| r.get(0))?;
                    if !dead || queued {
                        return Err(Fail(QueueError::Rejected(format!(
                            "message {id}: the receipt is stale (received again since, or gone)"
                        ))));
                    }
                }
            }
            tx.commit()?;
            Ok(())
        })
        .await
    }

    /// A message leased before its commit synced waits for that commit;
    /// every other one is durable already.
    async fn durable(&self, msg: &InMessage) -> Result<(), QueueError> {
        let Some(receipt) = &msg.receipt else {
            return Ok(());
        };
        let Some(mut outcome) = self.pending().get(receipt).cloned() else {
            return Ok(());
        };
        let result = match outcome.wait_for(Option::is_some).await {
            Ok(v) => v.clone().unwrap_or(Ok(())),
            Err(_) => Err(super::base::unavailable(
                "the commit holding this send was abandoned",
            )),
        };
        if result.is_err() {
            self.pending().remove(receipt);
        }
        result
    }

    /// Hides the message holding `msg.receipt` until now + `after`; the
    /// receipt ends (a later `release`/`delete` with it is a no-op, so the
    /// host's nack cannot shorten the wait). A stale receipt is refused.
    async fn delay(&self, msg: &InMessage, after: Duration) -> Result<(), QueueError> {
        let Some(receipt) = msg.receipt.clone() else {
            return Err(QueueError::Rejected(
                "delay needs the message's receipt".into(),
            ));
        };
        let id = msg.id.clone();
        self.call(move |conn, settings| {
            match release_tx(conn, &receipt, settings.now_ms().saturating_add(ms(after)))? {
                1 => Ok(()),
                _ => Err(Fail(QueueError::Rejected(format!(
                    "message {id}: the receipt is stale (received again since, or gone)"
                )))),
            }
        })
        .await
    }
}
