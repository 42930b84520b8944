//! What every part of the embedded queue uses: the error inside a blocking
//! call, the clock in milliseconds, random ids.

use crate::queue::port::QueueError;
use sha2::{Digest, Sha256};
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

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

pub(super) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

pub(super) fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

pub(super) fn timestamp(ms: i64) -> jiff::Timestamp {
    jiff::Timestamp::from_millisecond(ms).unwrap_or(jiff::Timestamp::UNIX_EPOCH)
}

/// 128 random bits as hex, without a `rand` dependency: std's per-process
/// random hash keys, the clock, the process id and a counter, through SHA-256.
pub(super) fn token() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut seed = std::collections::hash_map::RandomState::new().build_hasher();
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    seed.write_u64(n);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let mut h = Sha256::new();
    h.update(seed.finish().to_le_bytes());
    h.update(nanos.to_le_bytes());
    h.update(std::process::id().to_le_bytes());
    h.update(n.to_le_bytes());
    hex::encode(&h.finalize()[..16])
}

pub(super) fn count(v: i64) -> u32 {
    u32::try_from(v).unwrap_or(u32::MAX)
}
