//! What every part of the embedded queue uses: the error inside a blocking
//! call, its mutexes, durations in milliseconds, random ids.

use crate::queue::port::QueueError;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

/// Locks one of the queue's mutexes. A holder that panicked left nothing
/// half-done that the next one must not see (the connection rolls back an
/// open transaction; the others are plain collections), so the lock is
/// taken anyway.
pub(super) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// An error inside a blocking call: SQLite's, or the queue's own answer.
pub(super) struct Fail(pub(super) QueueError);

impl From<rusqlite::Error> for Fail {
    fn from(e: rusqlite::Error) -> Self {
        Fail(QueueError::Unavailable(format!("embedded queue: {e}")))
    }
}

impl From<QueueError> for Fail {
    fn from(e: QueueError) -> Self {
        Fail(e)
    }
}

pub(super) fn unavailable(e: impl std::fmt::Display) -> QueueError {
    QueueError::Unavailable(format!("embedded queue: {e}"))
}

pub(super) fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

pub(super) fn timestamp(ms: i64) -> jiff::Timestamp {
    jiff::Timestamp::from_millisecond(ms).unwrap_or(jiff::Timestamp::UNIX_EPOCH)
}

/// 128 random bits as hex: a receipt.
pub(super) fn token() -> String {
    crate::support::random::hex(16)
}

/// A message id, 32 hex digits like a receipt: the send time (unix ms, 12
/// digits) and 80 random bits. Ids sort by time, so a commit's inserts land
/// at the end of the id index (one page) instead of on a random page each.
pub(super) fn message_id(now_ms: i64) -> String {
    format!(
        "{:012x}{}",
        now_ms.clamp(0, 0xFFFF_FFFF_FFFF),
        crate::support::random::hex(10)
    )
}

pub(super) fn count(v: i64) -> u32 {
    u32::try_from(v).unwrap_or(u32::MAX)
}
