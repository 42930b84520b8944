//! What every part of the embedded queue uses: the error inside a blocking
//! call, durations in milliseconds, random ids.

use crate::queue::port::QueueError;
use std::time::Duration;

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

/// 128 random bits as hex: a receipt or a message id.
pub(super) fn token() -> String {
    crate::support::random::hex(16)
}

pub(super) fn count(v: i64) -> u32 {
    u32::try_from(v).unwrap_or(u32::MAX)
}
