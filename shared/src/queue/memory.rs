//! In-memory queue with SQS FIFO send semantics (dedup window per dedup id).
//! For tests, benchmarks and dry runs; it does not survive a restart — the
//! durable embedded queue of `relay serve` is a separate adapter.

use super::port::{InMessage, Inbox, OutgoingMessage, Queue, QueueError, SendReceipt};
use async_trait::async_trait;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// SQS's deduplication interval.
pub const DEDUP_WINDOW: Duration = Duration::from_secs(300);

#[derive(Default)]
struct State {
    messages: Vec<(String, OutgoingMessage)>,
    seen: HashMap<String, (Instant, String)>,
    next_id: u64,
}

#[derive(Default)]
pub struct MemoryQueue {
    state: Mutex<State>,
}

impl MemoryQueue {
    pub fn new() -> Self {
        Self::default()
    }

    /// Messages accepted so far, in send order, with their message ids.
    pub fn messages(&self) -> Vec<(String, OutgoingMessage)> {
        self.state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .messages
            .clone()
    }

    pub fn len(&self) -> usize {
        self.state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .messages
            .len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Drops all messages (benchmarks call this between iterations).
    pub fn clear(&self) {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        s.messages.clear();
        s.seen.clear();
    }
}

#[async_trait]
impl Queue for MemoryQueue {
    async fn send(&self, m: OutgoingMessage) -> Result<SendReceipt, QueueError> {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        s.seen
            .retain(|_, (at, _)| now.duration_since(*at) < DEDUP_WINDOW);
        if let Some((_, id)) = s.seen.get(&m.dedup_id) {
            return Ok(SendReceipt {
                message_id: id.clone(),
                duplicate: true,
            });
        }
        s.next_id += 1;
        let id = format!("mem-{}", s.next_id);
        s.seen.insert(m.dedup_id.clone(), (now, id.clone()));
        s.messages.push((id.clone(), m));
        Ok(SendReceipt {
            message_id: id,
            duplicate: false,
        })
    }
}

/// An [`Inbox`] that keeps dead letters and delays in memory (tests, and a
/// model of what the real ones must do).
#[derive(Default)]
pub struct MemoryInbox {
    pub dead: std::sync::Mutex<Vec<(InMessage, String)>>,
    pub delays: std::sync::Mutex<Vec<(String, Duration)>>,
    /// When set, dead-lettering fails (to test that nothing is lost).
    pub fail_dead_letters: std::sync::atomic::AtomicBool,
    /// When set, every message's send counts as not committed:
    /// [`Inbox::durable`] fails (to test that nothing is written for it).
    pub sends_not_committed: std::sync::atomic::AtomicBool,
}

#[async_trait]
impl Inbox for MemoryInbox {
    async fn dead_letter(&self, msg: &InMessage, reason: &str) -> Result<(), QueueError> {
        if self
            .fail_dead_letters
            .load(std::sync::atomic::Ordering::Relaxed)
        {
            return Err(QueueError::Unavailable("dead-letter queue down".into()));
        }
        self.dead
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((msg.clone(), reason.to_owned()));
        Ok(())
    }

    async fn delay(&self, msg: &InMessage, after: Duration) -> Result<(), QueueError> {
        self.delays
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((msg.id.clone(), after));
        Ok(())
    }

    async fn durable(&self, msg: &InMessage) -> Result<(), QueueError> {
        if self
            .sends_not_committed
            .load(std::sync::atomic::Ordering::Relaxed)
        {
            return Err(QueueError::Unavailable(format!(
                "the commit of {} failed",
                msg.id
            )));
        }
        Ok(())
    }
}
