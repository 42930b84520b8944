//! The queue port: where an authenticated webhook goes to wait for the worker.
//!
//! Semantics are SQS FIFO's: messages of one group are delivered in order,
//! groups in parallel, and a message whose deduplication id was seen within the
//! dedup window is accepted but not enqueued again. Adapters: SQS (feature
//! `aws`), the embedded queue (feature `embedded`) and an in-memory one with
//! the same send semantics. [`Queue`] is the sending side, [`Inbox`] what the
//! worker asks of the queue, [`Receiver`] what a polling host does with it.

use crate::intake::envelope::Envelope;
use async_trait::async_trait;
use std::time::Duration;

/// A message ready to be sent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutgoingMessage {
    pub group_id: String,
    pub dedup_id: String,
    pub body: String,
    /// String message attributes (`event`, `endpoint`, …).
    pub attributes: Vec<(&'static str, String)>,
}

impl OutgoingMessage {
    /// The queue message that carries this envelope: its FIFO group, its
    /// deduplication id, and the `event` / `endpoint` attributes. The intake
    /// and the reconciliation sweep both send this, so a webhook and a sweep
    /// for one change are the same message to the queue.
    pub fn of(envelope: &Envelope) -> Self {
        Self {
            group_id: envelope.group_id(),
            dedup_id: envelope.dedup_id(),
            body: envelope.encode(),
            attributes: vec![
                ("event", envelope.event.clone()),
                ("endpoint", envelope.endpoint.clone()),
            ],
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SendReceipt {
    pub message_id: String,
    /// The deduplication id was already sent within the window: nothing was
    /// enqueued (the id is the first message's). Known to the embedded and
    /// in-memory queues; SQS does not say, so its adapter answers `false`.
    pub duplicate: bool,
}

#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
pub enum QueueError {
    /// The queue could not take the message now; the sender should retry.
    #[error("queue unavailable: {0}")]
    Unavailable(String),
    /// The queue will never take this message (e.g. characters SQS refuses).
    #[error("queue refused the message: {0}")]
    Rejected(String),
}

impl crate::support::error::Classified for QueueError {
    fn class(&self) -> crate::support::error::Class {
        match self {
            QueueError::Unavailable(_) => crate::support::error::Class::Retryable,
            QueueError::Rejected(_) => crate::support::error::Class::Permanent,
        }
    }
    fn code(&self) -> &'static str {
        match self {
            QueueError::Unavailable(_) => "queue_unavailable",
            QueueError::Rejected(_) => "queue_rejected",
        }
    }
}

#[async_trait]
pub trait Queue: Send + Sync {
    async fn send(&self, message: OutgoingMessage) -> Result<SendReceipt, QueueError>;
}

/// A received message, whatever the queue.
#[derive(Clone, Debug)]
pub struct InMessage {
    pub id: String,
    /// FIFO group; messages without one form their own group.
    pub group_id: Option<String>,
    pub dedup_id: Option<String>,
    pub body: String,
    /// 1 on first delivery.
    pub receive_count: u32,
    /// The queue's handle for visibility changes / deletion.
    pub receipt: Option<String>,
}

/// What only the queue can do for the worker.
#[async_trait]
pub trait Inbox: Send + Sync {
    /// Moves the message to the dead-letter queue with `reason`. After `Ok`
    /// the message counts as handled (the host deletes / acknowledges it).
    async fn dead_letter(&self, msg: &InMessage, reason: &str) -> Result<(), QueueError>;
    /// Redelivers the message no earlier than `after`.
    async fn delay(&self, msg: &InMessage, after: Duration) -> Result<(), QueueError>;
    /// The message is handled (applied, filtered, no rule, or dead-lettered):
    /// a host that can acknowledge one message at once does it here, instead
    /// of after the whole batch, so a crash later in the batch does not bring
    /// it back to be applied a second time. The default leaves it to the host
    /// (Lambda's event source mapping deletes after the invocation).
    async fn handled(&self, msg: &InMessage) -> Result<(), QueueError> {
        let _ = msg;
        Ok(())
    }
    /// Waits until the send of `msg` is durable. A queue that hands a
    /// message to a waiting receiver while its send's commit is still
    /// syncing (the embedded queue's lease at send) answers once that commit
    /// is done: the worker prepares meanwhile and writes nothing anywhere
    /// before. An error means the send failed and the message was never
    /// queued (its sender got the error, e.g. Jira a 503, and retries):
    /// nothing may be done for it. The default: what a queue hands out is
    /// durable already.
    async fn durable(&self, msg: &InMessage) -> Result<(), QueueError> {
        let _ = msg;
        Ok(())
    }
}

/// The receiving side, for a host that polls the queue itself (`relay
/// serve`'s loops over the embedded queue, see [`super::poller`]; on AWS,
/// Lambda's event source mapping does this part). A receipt names one
/// delivery of a message; a stale one (the message was received again,
/// released, delayed, dead-lettered or deleted since) changes nothing.
#[async_trait]
pub trait Receiver: Inbox + Queue {
    /// Up to `max` messages, each hidden from other receivers for
    /// [`Receiver::visibility_timeout`] and holding a fresh receipt.
    async fn receive(&self, max: usize) -> Result<Vec<InMessage>, QueueError>;
    /// Sends `message` for a host whose receivers wait for work: where the
    /// queue can, the send's own commit also marks the message received
    /// (receive count 1, a receipt, hidden for the visibility timeout) when
    /// it is its group's head, and the next [`Receiver::receive`] of this
    /// process takes it without a commit of its own. The default sends.
    async fn send_leased(&self, message: OutgoingMessage) -> Result<SendReceipt, QueueError> {
        self.send(message).await
    }
    /// Takes the receipts of messages leased at their send that no receive
    /// has taken yet (a host that stops releases them).
    fn unclaimed(&self) -> Vec<String> {
        Vec::new()
    }
    /// Asks the queue to wake a waiting receiver through `wake` itself, once
    /// per message it queues, as early as it can hand the message out
    /// (before its commit has synced, see [`Inbox::durable`]). Returns
    /// whether it will; if not, the sender wakes the receivers after each
    /// send.
    fn wake_receivers_with(&self, wake: std::sync::Arc<tokio::sync::Notify>) -> bool {
        let _ = wake;
        false
    }
    /// Acknowledges (deletes) the message holding `receipt`. `Ok(false)`
    /// when the receipt is stale: nothing changes then.
    async fn delete(&self, receipt: &str) -> Result<bool, QueueError>;
    /// Negative acknowledgement: the message holding `receipt` becomes
    /// visible again after `delay` (`ZERO` = now), keeping its place in its
    /// group. `Ok(false)` when the receipt is stale.
    async fn release(&self, receipt: &str, delay: Duration) -> Result<bool, QueueError>;
    /// How long a received message stays hidden before it is delivered again.
    fn visibility_timeout(&self) -> Duration;
}
