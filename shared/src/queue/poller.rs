//! Polling a [`Receiver`]: the worker loops of `relay serve` over the
//! embedded queue (on AWS, Lambda's event source mapping does this).
//!
//! Each loop receives a batch, hands it to a [`BatchHandler`] (the worker)
//! with an [`Inbox`] for the batch, then settles every message: a handled one
//! is deleted at once by the inbox, a failed one released with its delay, the
//! rest deleted. Each send through [`Poller::sender`] wakes an idle loop; an idle
//! loop gives the handler time for upkeep. On shutdown the host stops the
//! loops (a `watch` channel) and [`Poller::release_in_flight`] gives back what
//! they still held.

use super::port::{InMessage, Inbox, OutgoingMessage, Queue, QueueError, Receiver, SendReceipt};
use async_trait::async_trait;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::{watch, Notify};

/// Messages per receive.
pub const BATCH: usize = 10;

/// What the loops hand received messages to (the worker, in `relay serve`).
#[async_trait]
pub trait BatchHandler: Send + Sync {
    /// Handles `messages`, finishing within `within`; returns the ids of the
    /// messages that failed (released, to come back after their delay).
    async fn handle(
        &self,
        inbox: &dyn Inbox,
        messages: &[InMessage],
        within: Duration,
    ) -> Vec<String>;
    /// The queue is empty: time for upkeep (`inbox` is the queue itself).
    async fn idle(&self, inbox: &dyn Inbox) {
        let _ = inbox;
    }
}

/// Redelivery delay after the `n`-th failed receive: 1 s, 2 s, 4 s … 5 min.
pub fn retry_delay(receive_count: u32) -> Duration {
    Duration::from_secs(1u64 << receive_count.saturating_sub(1).min(8))
        .min(Duration::from_secs(300))
}

/// Worker loops over one queue. Cheap to clone (shared state).
pub struct Poller<Q> {
    queue: Arc<Q>,
    wake: Arc<Notify>,
    /// Loops waiting for a send right now.
    idle: Arc<AtomicUsize>,
    /// Receipts held by a loop right now.
    in_flight: Arc<Mutex<HashSet<String>>>,
    /// The queue wakes the loops itself ([`Receiver::wake_receivers_with`]).
    queue_wakes: bool,
}

impl<Q> Clone for Poller<Q> {
    fn clone(&self) -> Self {
        Self {
            queue: self.queue.clone(),
            wake: self.wake.clone(),
            idle: self.idle.clone(),
            in_flight: self.in_flight.clone(),
            queue_wakes: self.queue_wakes,
        }
    }
}

/// The queue as senders see it: a send wakes one idle loop (a message is
/// work for one loop; waking all of them sent the rest to an empty receive,
/// each in line for the queue's connection before the next send's commit).
///
/// While a loop waits, a send is also leased to it in the send's own commit
/// ([`Receiver::send_leased`]): the woken loop's receive takes the message
/// without a transaction and an fsync of its own, which at a few webhooks a
/// second were a quarter of the time from webhook to record. A queue that
/// wakes the loops itself does so before that commit's fsync, and the
/// worker prepares the message while it syncs ([`Inbox::durable`]).
pub struct Waking<Q> {
    queue: Arc<Q>,
    wake: Arc<Notify>,
    idle: Arc<AtomicUsize>,
    queue_wakes: bool,
}

#[async_trait]
impl<Q: Receiver> Queue for Waking<Q> {
    async fn send(&self, m: OutgoingMessage) -> Result<SendReceipt, QueueError> {
        let r = if self.idle.load(Ordering::Acquire) > 0 {
            self.queue.send_leased(m).await?
        } else {
            self.queue.send(m).await?
        };
        if !self.queue_wakes {
            self.wake.notify_one();
        }
        Ok(r)
    }
}

impl<Q: Receiver + 'static> Poller<Q> {
    pub fn new(queue: Q) -> Self {
        let wake: Arc<Notify> = Arc::default();
        let queue_wakes = queue.wake_receivers_with(wake.clone());
        Self {
            queue: Arc::new(queue),
            wake,
            idle: Arc::default(),
            in_flight: Arc::default(),
            queue_wakes,
        }
    }

    /// The queue for senders (intake, reconciliation): each send wakes the loops.
    pub fn sender(&self) -> Waking<Q> {
        Waking {
            queue: self.queue.clone(),
            wake: self.wake.clone(),
            idle: self.idle.clone(),
            queue_wakes: self.queue_wakes,
        }
    }

    /// Starts one loop; it stops taking batches once `stop` turns `true`.
    pub fn spawn(
        &self,
        handler: Arc<dyn BatchHandler>,
        stop: watch::Receiver<bool>,
    ) -> tokio::task::JoinHandle<()> {
        tokio::spawn(self.clone().run(handler, stop))
    }

    /// Gives every message a loop still holds back to the queue, visible at
    /// once (after the loops were stopped); returns how many.
    pub async fn release_in_flight(&self) -> usize {
        let mut left: Vec<String> = lock(&self.in_flight).drain().collect();
        // Leased at their send to a loop that stopped before taking them.
        left.extend(self.queue.unclaimed());
        for r in &left {
            let _ = self.queue.release(r, Duration::ZERO).await;
        }
        left.len()
    }

    async fn run(self, handler: Arc<dyn BatchHandler>, mut stop: watch::Receiver<bool>) {
        let visibility = self.queue.visibility_timeout();
        loop {
            if *stop.borrow() {
                return;
            }
            // Register for a wake-up before looking, so a send in between is not missed.
            let notified = self.wake.notified();
            let msgs = match self.queue.receive(BATCH).await {
                Ok(m) => m,
                Err(e) => {
                    tracing::error!(error = %e, "cannot read the queue; retrying in 1 s");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            };
            if msgs.is_empty() {
                // Idle: the handler's upkeep has time now.
                handler.idle(&*self.queue).await;
                self.idle.fetch_add(1, Ordering::AcqRel);
                tokio::select! {
                    _ = notified => {}
                    _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                    _ = stop.changed() => {}
                }
                self.idle.fetch_sub(1, Ordering::AcqRel);
                continue;
            }
            let received = tokio::time::Instant::now();
            let receipts: Vec<String> = msgs.iter().filter_map(|m| m.receipt.clone()).collect();
            lock(&self.in_flight).extend(receipts.iter().cloned());
            let inbox = BatchInbox {
                queue: &*self.queue,
                delays: Mutex::new(HashMap::new()),
                settled: Mutex::new(HashSet::new()),
            };
            // Finish well inside the visibility timeout, so no other loop gets the
            // same message while this one still works on it.
            let within = visibility.saturating_sub(Duration::from_secs(5));
            let failed = handler.handle(&inbox, &msgs, within).await;
            let delays = inbox.delays.into_inner().unwrap_or_else(|e| e.into_inner());
            let settled = inbox
                .settled
                .into_inner()
                .unwrap_or_else(|e| e.into_inner());
            // The receipts stay ours until the visibility timeout runs out.
            let settle_by = received + visibility.saturating_sub(Duration::from_secs(1));
            for m in &msgs {
                let Some(receipt) = &m.receipt else { continue };
                if settled.contains(&m.id) {
                    continue;
                }
                let delay = failed.contains(&m.id).then(|| {
                    delays
                        .get(&m.id)
                        .copied()
                        .unwrap_or_else(|| retry_delay(m.receive_count))
                });
                self.settle(m, receipt, delay, settle_by).await;
            }
            let mut set = lock(&self.in_flight);
            for r in &receipts {
                set.remove(r);
            }
        }
    }

    /// Releases (`delay: Some`) or deletes one message. An applied message
    /// that is not deleted comes back and is applied again (a second
    /// comment), so a queue error is retried for as long as the receipt is
    /// ours (`settle_by`).
    async fn settle(
        &self,
        m: &InMessage,
        receipt: &str,
        delay: Option<Duration>,
        settle_by: tokio::time::Instant,
    ) {
        let mut pause = Duration::from_millis(100);
        loop {
            let done = match delay {
                Some(delay) => self.queue.release(receipt, delay).await.map(|_| ()),
                // Dead letters were moved already; this is then a no-op.
                None => self.queue.delete(receipt).await.map(|_| ()),
            };
            match done {
                Ok(()) => return,
                Err(e) if tokio::time::Instant::now() + pause < settle_by => {
                    tracing::warn!(message_id = %m.id, error = %e, "cannot update the queue; retrying");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(2));
                }
                Err(e) => {
                    tracing::error!(message_id = %m.id, error = %e, "cannot update the queue (the message comes back after the visibility timeout)");
                    return;
                }
            }
        }
    }
}

/// The worker's inbox for one batch: dead letters go to the queue's dead
/// table at once; a handled message is deleted at once (not after the whole
/// batch: a crash meanwhile would bring it back and apply it twice); asked-for
/// delays are remembered and applied on release.
struct BatchInbox<'a, Q> {
    queue: &'a Q,
    delays: Mutex<HashMap<String, Duration>>,
    /// Messages deleted by [`Inbox::handled`].
    settled: Mutex<HashSet<String>>,
}

#[async_trait]
impl<Q: Receiver> Inbox for BatchInbox<'_, Q> {
    async fn dead_letter(&self, msg: &InMessage, reason: &str) -> Result<(), QueueError> {
        self.queue.dead_letter(msg, reason).await
    }

    async fn delay(&self, msg: &InMessage, after: Duration) -> Result<(), QueueError> {
        lock(&self.delays).insert(msg.id.clone(), after);
        Ok(())
    }

    async fn handled(&self, msg: &InMessage) -> Result<(), QueueError> {
        if let Some(receipt) = &msg.receipt {
            self.queue.delete(receipt).await?;
            lock(&self.settled).insert(msg.id.clone());
        }
        Ok(())
    }

    async fn durable(&self, msg: &InMessage) -> Result<(), QueueError> {
        self.queue.durable(msg).await
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_delays_grow_and_cap() {
        assert_eq!(retry_delay(1), Duration::from_secs(1));
        assert_eq!(retry_delay(2), Duration::from_secs(2));
        assert_eq!(retry_delay(5), Duration::from_secs(16));
        assert_eq!(retry_delay(30), Duration::from_secs(256));
        assert_eq!(retry_delay(0), Duration::from_secs(1));
    }
}
