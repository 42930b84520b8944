//! Where the console's pages read from: `relay serve`'s embedded queue
//! ([`LocalQueues`]) and delivery journal ([`JournalFeed`]), or a deployed
//! stack's SQS queues (`super::aws::SqsQueues`) and worker logs
//! (`super::logs::LogsFeed`) for `relay console --aws`.

use crate::serve::Health;
use shared::journal::sqlite::{FeedQuery, SqliteJournal};
use shared::journal::{ConnectionHealth, Delivery};
use shared::queue::{DeadLetter, EmbeddedQueue, QueueStats};
use std::sync::Arc;

/// The queue and its dead letters, as the console shows and acts on them.
#[async_trait::async_trait]
pub trait Queues: Send + Sync {
    /// One line for the queue page: which queue this is.
    fn describe(&self) -> String;
    async fn stats(&self) -> Result<QueueStats, String>;
    async fn dead_list(&self, limit: usize) -> Result<Vec<DeadLetter>, String>;
    async fn dead_get(&self, id: &str) -> Result<Option<DeadLetter>, String>;
    /// Moves one dead letter (`Some(id)`) or all back; returns how many moved.
    async fn redrive(&self, id: Option<&str>) -> Result<usize, String>;
    /// `Ok` when the relay behind the queue can work; the reason otherwise.
    async fn health(&self) -> Result<(), String>;
    /// (alive, started) worker loops, where this process runs them.
    fn workers(&self) -> Option<(usize, usize)>;
}

/// `relay serve`'s own queue and worker loops.
pub struct LocalQueues {
    pub queue: EmbeddedQueue,
    pub health: Arc<Health>,
}

#[async_trait::async_trait]
impl Queues for LocalQueues {
    fn describe(&self) -> String {
        format!("embedded queue {}", self.queue.path().display())
    }

    async fn stats(&self) -> Result<QueueStats, String> {
        self.queue.stats().await.map_err(|e| e.to_string())
    }

    async fn dead_list(&self, limit: usize) -> Result<Vec<DeadLetter>, String> {
        self.queue.dead_list(limit).await.map_err(|e| e.to_string())
    }

    async fn dead_get(&self, id: &str) -> Result<Option<DeadLetter>, String> {
        self.queue.dead_get(id).await.map_err(|e| e.to_string())
    }

    async fn redrive(&self, id: Option<&str>) -> Result<usize, String> {
        self.queue.redrive(id).await.map_err(|e| e.to_string())
    }

    async fn health(&self) -> Result<(), String> {
        self.health.check().await
    }

    fn workers(&self) -> Option<(usize, usize)> {
        Some(self.health.workers())
    }
}

/// The message feed: `relay serve`'s delivery journal, or a stack's worker
/// logs (`super::logs::LogsFeed`).
#[async_trait::async_trait]
pub trait Deliveries: Send + Sync {
    /// One line for the queue page: where the feed comes from.
    async fn describe(&self) -> String;
    /// Newest first.
    async fn feed(&self, q: FeedQuery) -> Result<Vec<Delivery>, String>;
    async fn get(&self, id: i64) -> Result<Option<Delivery>, String>;
    /// The attempts about a record pair, oldest first, with the pair's keys.
    async fn conversation(&self, key: String) -> Result<(Vec<String>, Vec<Delivery>), String>;
    /// Endpoints, events and outcomes seen (the filters' choices).
    async fn choices(&self) -> [Vec<String>; 3];
    /// Last success and failure per connection, where the feed knows them.
    fn connections(&self) -> Vec<ConnectionHealth>;
}

/// `relay serve`'s journal.
pub struct JournalFeed(pub Arc<SqliteJournal>);

#[async_trait::async_trait]
impl Deliveries for JournalFeed {
    async fn describe(&self) -> String {
        format!(
            "{} rows in {}; {} dropped since start",
            self.0.count().await.unwrap_or(0),
            self.0.path().display(),
            self.0.dropped()
        )
    }

    async fn feed(&self, q: FeedQuery) -> Result<Vec<Delivery>, String> {
        self.0.feed(q).await
    }

    async fn get(&self, id: i64) -> Result<Option<Delivery>, String> {
        self.0.get(id).await
    }

    async fn conversation(&self, key: String) -> Result<(Vec<String>, Vec<Delivery>), String> {
        self.0.conversation(key).await
    }

    async fn choices(&self) -> [Vec<String>; 3] {
        self.0.choices().await.unwrap_or_default()
    }

    fn connections(&self) -> Vec<ConnectionHealth> {
        self.0.health()
    }
}
