//! The queue handle: one SQLite connection behind a mutex, used on the
//! blocking pool; opening a file.

use super::base::{lock, unavailable, Fail};
use super::schema::migrate;
use crate::queue::port::QueueError;
use crate::support::clock::{Clock, SystemClock};
use rusqlite::wal::CheckpointMode;
use rusqlite::Connection;
use std::ffi::c_int;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How long a call waits for another process holding the write lock (e.g.
/// `relay queue …` inspecting the file while `relay serve` runs).
pub(super) const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Frames in the log from which the committer checkpoints it, once it has
/// answered the writes of its transaction (`commit::checkpoint_if_due`).
/// SQLite's own automatic mark.
pub(super) const CHECKPOINT_FRAMES: u64 = 1000;

/// Frames from which the COMMIT that grew the log checkpoints it itself, as
/// SQLite's automatic checkpoint would: the bound for a log grown by commits
/// outside the group commit (receives, the admin commands) while no group
/// commit runs to checkpoint it, or held by another process's reader.
const INLINE_CHECKPOINT_FRAMES: c_int = 4 * CHECKPOINT_FRAMES as c_int;

/// Queue behaviour.
#[derive(Clone, Debug)]
pub struct EmbeddedSettings {
    /// How long a received message stays hidden without an ack (default 60 s).
    pub visibility_timeout: Duration,
    /// How long a deduplication id is remembered (default 5 min, like SQS).
    pub dedup_window: Duration,
    /// Receives allowed before the queue dead-letters a message itself
    /// (default 5). `0` disables the automatic dead-lettering.
    pub max_receive_count: u32,
    /// Wall time for visibility, delays, dedup windows and stamps.
    pub clock: Arc<dyn Clock>,
}

impl EmbeddedSettings {
    /// Now, in Unix milliseconds, by the queue's clock.
    pub(super) fn now_ms(&self) -> i64 {
        self.clock.now().as_millisecond()
    }
}

impl Default for EmbeddedSettings {
    fn default() -> Self {
        Self {
            visibility_timeout: Duration::from_secs(60),
            dedup_window: crate::queue::memory::DEDUP_WINDOW,
            max_receive_count: 5,
            clock: Arc::new(SystemClock),
        }
    }
}

/// The durable queue. Cheap to clone (shared connection).
#[derive(Clone)]
pub struct EmbeddedQueue {
    pub(super) inner: Arc<Inner>,
}

pub(super) struct Inner {
    pub(super) conn: Mutex<Connection>,
    /// Sends and deletes waiting for their group commit.
    pub(super) line: Mutex<Line>,
    pub(super) settings: EmbeddedSettings,
    pub(super) path: PathBuf,
    /// Messages leased at their send to the next receive of this process
    /// (see `Receiver::send_leased`), oldest first. They are put here before
    /// their commit syncs; see `commit::Gate`.
    pub(super) leased: Mutex<std::collections::VecDeque<Leased>>,
    /// Receipts of leased messages whose commit was not known durable when
    /// they were handed out, with that commit's outcome once known (`Ok`
    /// ones are removed by the committer, failed ones by the receiver that
    /// asks, or by the receipt's delete or release).
    pub(super) pending: Mutex<std::collections::HashMap<String, Outcome>>,
    /// Wakes a waiting receiver once per message queued, set by the host
    /// that polls (`Receiver::wake_receivers_with`).
    pub(super) waker: std::sync::OnceLock<Arc<tokio::sync::Notify>>,
    /// Frames in the log after the last commit on `conn` (see
    /// [`count_log_frames`]); 0 after an inline checkpoint that copied them
    /// all (after the committer's, the restart's commit sets it).
    pub(super) log_frames: Arc<AtomicU64>,
}

/// A commit's outcome as the receivers of its early leases see it: `None`
/// until the COMMIT returned (see `commit::Gate`).
pub(super) type Outcome = tokio::sync::watch::Receiver<Option<Result<(), QueueError>>>;

/// A message its own send's commit marked received (receive count 1, a
/// receipt, hidden until `hidden_until`), waiting for a receive to take it.
pub(super) struct Leased {
    pub(super) message: crate::queue::port::InMessage,
    /// Unix ms.
    pub(super) hidden_until: i64,
}

/// One write waiting for its commit.
pub(super) enum Write {
    /// Enqueue, deduplicated within the window.
    /// (the message with its body taken out, its attributes as JSON, the body
    /// as stored, and the body as sent when the send leases it: `send_leased`)
    Send(
        crate::queue::port::OutgoingMessage,
        String,
        super::stored::Stored,
        Option<String>,
    ),
    /// Acknowledge the message holding this receipt.
    Delete(String),
}

/// Its result once committed.
pub(super) enum Written {
    Sent(crate::queue::port::SendReceipt),
    Deleted(bool),
}

/// Sends and deletes in line for their group commit (see `commit`), and
/// whether a committer is running.
#[derive(Default)]
pub(super) struct Line {
    pub(super) waiting: Vec<(
        Write,
        tokio::sync::oneshot::Sender<Result<Written, QueueError>>,
    )>,
    pub(super) running: bool,
    /// Transactions committed and writes they carried (tests).
    pub(super) commits: u64,
    pub(super) writes: u64,
}

impl std::fmt::Debug for EmbeddedQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedQueue")
            .field("path", &self.inner.path)
            .field("settings", &self.inner.settings)
            .finish()
    }
}

impl EmbeddedQueue {
    /// Opens (creating if needed: directory, file, schema) the queue at `path`.
    /// Refuses a file written by a newer schema or by another application.
    pub fn open(path: &Path, settings: EmbeddedSettings) -> Result<Self, QueueError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| unavailable(format_args!("cannot create {}: {e}", dir.display())))?;
        }
        let at = |e: rusqlite::Error| unavailable(format_args!("{}: {e}", path.display()));
        let mut conn = Connection::open(path).map_err(at)?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(at)?;
        let mode: String = conn
            .pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))
            .map_err(at)?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(unavailable(format_args!(
                "{}: the file system does not support WAL mode (journal_mode={mode})",
                path.display()
            )));
        }
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(at)?;
        let log_frames = Arc::new(AtomicU64::new(0));
        count_log_frames(&mut conn, log_frames.clone()).map_err(at)?;
        migrate(&mut conn, path)?;
        let q = Self {
            inner: Arc::new(Inner {
                conn: Mutex::new(conn),
                line: Mutex::default(),
                settings,
                path: path.to_path_buf(),
                leased: Mutex::default(),
                pending: Mutex::default(),
                waker: std::sync::OnceLock::new(),
                log_frames,
            }),
        };
        Ok(q)
    }

    /// The file this queue lives in.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    pub fn settings(&self) -> &EmbeddedSettings {
        &self.inner.settings
    }

    /// Runs `f` with the connection on the blocking pool.
    pub(super) async fn call<T, F>(&self, f: F) -> Result<T, QueueError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection, &EmbeddedSettings) -> Result<T, Fail> + Send + 'static,
    {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            let mut conn = lock(&inner.conn);
            f(&mut conn, &inner.settings).map_err(|Fail(e)| e)
        })
        .await
        .map_err(unavailable)?
    }
}

/// Replaces SQLite's automatic checkpoint on `conn`. That one runs inside the
/// COMMIT that takes the log past 1 000 frames: the copy and two more fsyncs
/// before the transaction's senders are answered, so every few dozen
/// webhooks one 202 waited for them. Now each commit only counts the log's
/// frames into `frames`, and the committer checkpoints after it has answered
/// (`commit::checkpoint_if_due`). A log grown past
/// [`INLINE_CHECKPOINT_FRAMES`] by commits no group commit follows is still
/// checkpointed by the commit itself.
fn count_log_frames(conn: &mut Connection, frames: Arc<AtomicU64>) -> rusqlite::Result<()> {
    // The largest multiple of the inline mark a warning was given for.
    let mut warned = 1;
    conn.wal_hook(Some(
        move |wal: &mut rusqlite::hooks::Wal, pages: c_int| -> rusqlite::Result<()> {
            let mut left = pages;
            if pages >= INLINE_CHECKPOINT_FRAMES {
                // An error returned here would fail the COMMIT that has
                // already happened: logged, as SQLite's own checkpoint
                // ignores it.
                match wal.checkpoint_v2(CheckpointMode::PASSIVE) {
                    Ok((log, copied)) if log == copied => left = 0,
                    Ok(_) => {}
                    Err(e) => tracing::debug!(error = %e, "queue log checkpoint failed"),
                }
                // Still growing: say so once per further mark's worth.
                let marks = pages / INLINE_CHECKPOINT_FRAMES;
                if left > 0 && marks > warned {
                    warned = marks;
                    tracing::warn!(
                        frames = pages,
                        "the queue's log is not being checkpointed (another process \
                         reading the queue file for long, or the disk failing)"
                    );
                }
            } else {
                warned = 1;
            }
            frames.store(u64::try_from(left).unwrap_or(0), Ordering::Relaxed);
            Ok(())
        },
    ))
}
