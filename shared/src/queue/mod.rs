//! The queue: one port ([`port`]: send, receive, acknowledge, delay,
//! dead-letter) and its adapters — SQS FIFO (feature `aws`), the embedded
//! SQLite queue of `relay serve` (feature `embedded`) and an in-memory one —
//! and [`poller`], the loops that drive a queue a host polls itself.

#[cfg(feature = "embedded")]
pub mod embedded;
pub mod memory;
pub mod poller;
pub mod port;
#[cfg(feature = "aws")]
pub mod sqs;

#[cfg(feature = "embedded")]
pub use embedded::{DeadLetter, EmbeddedQueue, EmbeddedSettings, QueueStats, SCHEMA_VERSION};
pub use memory::{MemoryInbox, MemoryQueue};
pub use poller::{BatchHandler, Poller};
pub use port::*;
#[cfg(feature = "aws")]
pub use sqs::{SqsInbox, SqsQueue};
