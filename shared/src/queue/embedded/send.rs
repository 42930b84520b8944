//! Sending: committed (fsynced) before `send` returns, deduplicated within
//! the window.

use super::base::{ms, token, unavailable};
use super::store::EmbeddedQueue;
use crate::queue::port::{OutgoingMessage, Queue, QueueError, SendReceipt};
use async_trait::async_trait;
use rusqlite::{params, OptionalExtension, TransactionBehavior};

#[async_trait]
impl Queue for EmbeddedQueue {
    /// Committed (fsynced) when this returns `Ok`. A deduplication id seen
    /// within the window answers the original message id and enqueues nothing.
    async fn send(&self, m: OutgoingMessage) -> Result<SendReceipt, QueueError> {
        if m.group_id.is_empty() || m.dedup_id.is_empty() {
            return Err(QueueError::Rejected(
                "a message needs a group id and a deduplication id".into(),
            ));
        }
        let attributes = serde_json::to_string(&m.attributes).map_err(unavailable)?;
        let (message_id, duplicate) = self
            .call(move |conn, settings| {
                let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
                // After the lock: BEGIN IMMEDIATE may wait up to the busy timeout.
                let now = settings.now_ms();
                tx.prepare_cached("DELETE FROM dedup WHERE sent_at <= ?1")?
                    .execute([now.saturating_sub(ms(settings.dedup_window))])?;
                let seen: Option<String> = tx
                    .prepare_cached("SELECT message_id FROM dedup WHERE dedup_id = ?1")?
                    .query_row([&m.dedup_id], |r| r.get(0))
                    .optional()?;
                if let Some(id) = seen {
                    return Ok((id, true));
                }
                let id = token();
                tx.prepare_cached(
                    "INSERT INTO messages
                            (id, group_id, dedup_id, body, attributes, enqueued_at, visible_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6)",
                )?
                .execute(params![id, m.group_id, m.dedup_id, m.body, attributes, now])?;
                if !settings.dedup_window.is_zero() {
                    tx.prepare_cached(
                        "INSERT INTO dedup (dedup_id, message_id, sent_at) VALUES (?1, ?2, ?3)",
                    )?
                    .execute(params![m.dedup_id, id, now])?;
                }
                tx.commit()?;
                Ok((id, false))
            })
            .await?;
        Ok(SendReceipt {
            message_id,
            duplicate,
        })
    }
}
