//! Sending: committed (fsynced) before `send` returns, deduplicated within
//! the window; concurrent sends share one commit (`commit`).

use super::base::unavailable;
use super::commit::{Write, Written};
use super::store::EmbeddedQueue;
use super::stored::Stored;
use crate::queue::port::{OutgoingMessage, Queue, QueueError, SendReceipt};
use async_trait::async_trait;

#[async_trait]
impl Queue for EmbeddedQueue {
    /// Committed (fsynced) when this returns `Ok`. A deduplication id seen
    /// within the window answers the original message id and enqueues nothing.
    async fn send(&self, m: OutgoingMessage) -> Result<SendReceipt, QueueError> {
        self.send_as(m, false).await
    }
}

impl EmbeddedQueue {
    /// [`Queue::send`]; with `lease`, also leased to the next receive of this
    /// process in the same commit when it is its group's head
    /// (`Receiver::send_leased`).
    pub(super) async fn send_as(
        &self,
        mut m: OutgoingMessage,
        lease: bool,
    ) -> Result<SendReceipt, QueueError> {
        if m.group_id.is_empty() || m.dedup_id.is_empty() {
            return Err(QueueError::Rejected(
                "a message needs a group id and a deduplication id".into(),
            ));
        }
        let attributes = serde_json::to_string(&m.attributes).map_err(unavailable)?;
        let text = std::mem::take(&mut m.body);
        // Compressed here, on the sender's thread, not by the committer.
        let (body, lease) = if lease {
            (Stored::pack(text.clone()), Some(text))
        } else {
            (Stored::pack(text), None)
        };
        match self.write(Write::Send(m, attributes, body, lease)).await? {
            Written::Sent(r) => Ok(r),
            Written::Deleted(_) => Err(unavailable("a send answered as a delete")),
        }
    }
}
