//! The clock port, so that time-dependent code (envelope stamps, schedules,
//! token expiry) can be tested with a fixed or moving clock.

use std::sync::Mutex;

pub trait Clock: Send + Sync + std::fmt::Debug {
    fn now(&self) -> jiff::Timestamp;
}

/// The system clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> jiff::Timestamp {
        jiff::Timestamp::now()
    }
}

/// A clock that shows what it is set to.
#[derive(Debug)]
pub struct FixedClock(Mutex<jiff::Timestamp>);

impl FixedClock {
    pub fn new(at: jiff::Timestamp) -> Self {
        Self(Mutex::new(at))
    }

    pub fn set(&self, at: jiff::Timestamp) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = at;
    }
}

impl Clock for FixedClock {
    fn now(&self) -> jiff::Timestamp {
        *self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}
