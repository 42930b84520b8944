//! The embedded durable queue of `relay serve`: SQS FIFO semantics in one
//! SQLite file, for one machine and no AWS.
//!
//! # Why SQLite (via `rusqlite`, `bundled`)
//!
//! - **One file, no server.** `relay serve` stays a single process the user
//!   starts; the queue is a file next to the config (`queue.db` plus its
//!   `-wal`/`-shm` companions while open). Backups are a file copy of a
//!   stopped queue (or `VACUUM INTO`).
//! - **ACID transactions.** Every call that changes state is one transaction
//!   (`BEGIN IMMEDIATE` … `COMMIT`): a receive that dead-letters one message
//!   and hands out three others either happens whole or not at all.
//! - **Crash safe.** In WAL mode a commit is one append to the write-ahead
//!   log; a process killed at any instant (`kill -9`, OOM, panic=abort)
//!   leaves either the committed transaction or none, and the next open
//!   recovers from the log. The test `kill9_child_process_loses_nothing`
//!   checks exactly that with a real `SIGKILL`.
//! - **Maintained and bundled.** SQLite is among the most tested libraries
//!   there are; `bundled` compiles a known version in, so nothing depends on
//!   the host's libsqlite3.
//!
//! # Durability: `journal_mode=WAL` + `synchronous=FULL`
//!
//! With `synchronous=NORMAL` in WAL mode a committed transaction survives a
//! process crash (the log is in the OS page cache) but **not** a power loss
//! or kernel panic: the last commits before the outage may roll back. The
//! ingress answers the webhook sender `2xx` right after [`Queue::send`]
//! returns, and the sender will not deliver again, so a commit that rolls
//! back is a lost event. `FULL` fsyncs the log on every commit, so after
//! `send` returns `Ok` the message is on stable storage. The price is one
//! fsync per commit; concurrent sends and deletes share one commit (group
//! commit, `commit`): a lone send commits at once, sends that arrive while a
//! commit runs go together into the next, so intake is not bound by the
//! disk's fsyncs per second (`throughput_concurrent`, BENCHMARKS.md).
//!
//! The log is checkpointed into the file by the committer, after it has
//! answered a transaction that took the log past 1 000 frames, not inside
//! that COMMIT as SQLite's automatic checkpoint would (`commit`,
//! `store::count_log_frames`): that transaction's senders do not wait for
//! the copy and its fsyncs; writes that arrive meanwhile do. A log that
//! reaches 4 000 frames anyway is checkpointed by the COMMIT that grew it.
//!
//! # Model
//!
//! - `messages`: one row per queued message; `seq` (autoincrement) is the
//!   send order. A message is *in flight* while it holds a receipt and its
//!   `visible_at` lies ahead, *delayed* when it has no receipt and
//!   `visible_at` lies ahead, and *visible* otherwise.
//! - FIFO: [`EmbeddedQueue::receive`] only ever hands out the **head** (lowest
//!   `seq`) of a group, and only when that head is visible. So a group has at
//!   most one message in flight, a group whose head is in flight or delayed
//!   is blocked, and messages of one group are delivered strictly in send
//!   order. Heads of different groups are handed out together, oldest first.
//! - Leased at the send: a send for a waiting receiver
//!   ([`Receiver::send_leased`](super::port::Receiver::send_leased), used by
//!   `relay serve` while a worker loop is idle) that is its group's head is
//!   marked received in its own commit (receive count 1, a receipt, hidden
//!   for the visibility timeout) and kept in memory until the next receive
//!   takes it, with no transaction of its own: the event reaches its target
//!   one commit (and one fsync) sooner. A lease half gone untaken is released
//!   by the next receive; a crash leaves it to expire like any message in
//!   flight. The lease goes out (and the queue wakes a loop, see
//!   [`Receiver::wake_receivers_with`](super::port::Receiver::wake_receivers_with))
//!   between the transaction's last statement and its COMMIT: the worker
//!   decodes and plans while the log syncs, and writes nothing until
//!   [`Inbox::durable`](super::port::Inbox::durable) says the COMMIT is done.
//!   A failed COMMIT withdraws its leases: the loop that took one is told,
//!   and the sender gets the error (the intake answers 503).
//! - Receipts: every receive issues a fresh random receipt. A receipt stays
//!   valid until the message is received again (also after the visibility
//!   timeout passed, like SQS), released, delayed, deleted or dead-lettered.
//!   [`EmbeddedQueue::delete`] and [`EmbeddedQueue::release`] with a stale
//!   receipt change nothing and return `Ok(false)`.
//! - Redrive policy: a message that would be received for the
//!   `max_receive_count + 1`-th time is moved to the `dead` table with reason
//!   `max_receive_count: received N times without success`, and the receive
//!   goes on with the next message.
//! - Deduplication: `dedup` maps a deduplication id to the first message id
//!   for `dedup_window`; a duplicate send is accepted and answers the
//!   original id (SQS behaviour). Expired rows are pruned on every send.
//! - Times are integer unix milliseconds from the system clock.
//! - The schema is versioned with `PRAGMA user_version` and marked with
//!   `PRAGMA application_id`; a file of a newer schema (or another
//!   application) is refused.
//!
//! # Files
//!
//! - [`store`]: the handle, its settings, opening a file (WAL, `FULL`);
//! - [`schema`]: the tables and their migration;
//! - `commit`: group commit of sends and deletes;
//! - `stored`: how a body is kept (long ones LZ4-compressed);
//! - `send`: [`Queue::send`](super::port::Queue::send) with deduplication;
//! - `receive`: the receiving side ([`Receiver`](super::port::Receiver) and
//!   [`Inbox`](super::port::Inbox)): receive, delete, release, delay, dead-letter;
//! - `admin`: what operators see and do: stats, dead letters, redrive.

mod admin;
mod base;
mod commit;
mod receive;
pub mod schema;
mod send;
pub mod store;
mod stored;
#[cfg(test)]
mod tests;

pub use admin::{DeadLetter, QueueStats};
pub use schema::SCHEMA_VERSION;
pub use store::{EmbeddedQueue, EmbeddedSettings};
