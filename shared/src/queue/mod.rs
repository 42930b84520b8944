//! The queue port: where an authenticated webhook goes to wait for the worker.
//!
//! Semantics are SQS FIFO's: messages of one group are delivered in order,
//! groups in parallel, and a message whose deduplication id was seen within the
//! dedup window is accepted but not enqueued again. Adapters: SQS (feature
//! `aws`) and an in-memory one with the same send semantics.

#[cfg(feature = "embedded")]
mod embedded;
mod memory;
#[cfg(feature = "aws")]
mod sqs;

#[cfg(feature = "embedded")]
pub use embedded::{DeadLetter, EmbeddedQueue, EmbeddedSettings, QueueStats, SCHEMA_VERSION};
pub use memory::MemoryQueue;
#[cfg(feature = "aws")]
pub use sqs::{SqsInbox, SqsQueue};

use async_trait::async_trait;

/// A message ready to be sent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutgoingMessage {
    pub group_id: String,
    pub dedup_id: String,
    pub body: String,
    /// String message attributes (`event`, `endpoint`, …).
    pub attributes: Vec<(&'static str, String)>,
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

#[async_trait]
pub trait Queue: Send + Sync {
    async fn send(&self, message: OutgoingMessage) -> Result<SendReceipt, QueueError>;
}
