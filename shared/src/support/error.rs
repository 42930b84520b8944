//! What every layer's error says to the worker and the dead-letter queue:
//! whether trying again can help, and a stable reason code.
//!
//! Each layer has its own error enum (`thiserror`): `QueueError`,
//! `LinkError`, `SecretError`, `CallError`, `EnvelopeError`, `PlanError`, …
//! They implement [`Classified`], so the worker turns any of them into a
//! retry (back to the queue) or a dead letter with the reason
//! `<code>: <message>` — the code is what operators filter the DLQ and the
//! logs on.

use std::fmt::Display;

/// Whether trying again later can help.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Class {
    /// A dependency is down or busy: the event goes back to the queue.
    Retryable,
    /// The event or the config is at fault: the event is dead-lettered.
    Permanent,
}

/// An error as the worker and the dead-letter queue see it.
pub trait Classified: Display {
    fn class(&self) -> Class;
    /// The stable reason code (`link_store_unavailable`, `bad_envelope`, …).
    fn code(&self) -> &'static str;
    /// `<code>: <message>`, the reason logged and kept with a dead letter.
    fn reason_line(&self) -> String {
        format!("{}: {self}", self.code())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("disk full")]
    struct Full;

    impl Classified for Full {
        fn class(&self) -> Class {
            Class::Retryable
        }
        fn code(&self) -> &'static str {
            "store_unavailable"
        }
    }

    #[test]
    fn reason_line_is_code_then_message() {
        assert_eq!(Full.reason_line(), "store_unavailable: disk full");
        assert_eq!(Full.class(), Class::Retryable);
    }
}
