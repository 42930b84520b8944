//! Rate limits and backoff: how long the target asked us to wait.
//!
//! - `Retry-After`: delta-seconds (`"5"`) or an HTTP date
//!   (`"Wed, 21 Oct 2026 07:28:00 GMT"`), as RFC 9110 allows; ServiceNow and
//!   Jira both send it with 429 (Jira also with some 503s).
//! - Jira: `X-RateLimit-Reset` (an ISO 8601 timestamp: when the budget
//!   refills) and `RateLimit-Reason` (which limit was hit; logged).
//! - Otherwise: exponential backoff from 250 ms, doubling, capped at 8 s, with
//!   full jitter so that parallel workers do not retry in step.

use http::HeaderMap;
use std::time::Duration;

/// The longest wait a server may ask for that we honour as given (a bogus
/// `Retry-After: 86400` must not park a message for a day).
pub const MAX_WAIT: Duration = Duration::from_secs(900);

/// What a 429/503 response told us.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RateLimit {
    /// How long to wait before the next call.
    pub wait: Option<Duration>,
    /// Jira's `RateLimit-Reason`, for the log.
    pub reason: Option<String>,
}

/// Reads `Retry-After`, `X-RateLimit-Reset` and `RateLimit-Reason`; `now` is
/// the current time (for dates).
pub fn read(headers: &HeaderMap, now: jiff::Timestamp) -> RateLimit {
    let text = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|s| !s.is_empty())
    };
    let wait = text("retry-after")
        .and_then(|v| retry_after(v, now))
        .or_else(|| text("x-ratelimit-reset").and_then(|v| reset_at(v, now)))
        .map(|d| d.min(MAX_WAIT));
    RateLimit {
        wait,
        reason: text("ratelimit-reason").map(|r| r.chars().take(100).collect()),
    }
}

/// `Retry-After`: seconds or an HTTP date.
pub fn retry_after(value: &str, now: jiff::Timestamp) -> Option<Duration> {
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = jiff::fmt::rfc2822::parse(value).ok()?.timestamp();
    Some(until(at, now))
}

/// `X-RateLimit-Reset`: an ISO 8601 timestamp (Jira Cloud writes e.g.
/// `2026-11-23T10:00Z`).
pub fn reset_at(value: &str, now: jiff::Timestamp) -> Option<Duration> {
    let at: jiff::Timestamp = value
        .parse()
        .ok()
        .or_else(|| value.replace('Z', ":00Z").parse().ok())?;
    Some(until(at, now))
}

fn until(at: jiff::Timestamp, now: jiff::Timestamp) -> Duration {
    let ms = at.as_millisecond() - now.as_millisecond();
    Duration::from_millis(ms.max(0) as u64)
}

/// Backoff before attempt `attempt + 1` (attempt counts from 0): a random
/// duration up to `min(8 s, 250 ms × 2^attempt)`, at least 50 ms.
pub fn backoff(attempt: u32) -> Duration {
    let cap = 250u64.saturating_mul(1 << attempt.min(5)).min(8_000);
    Duration::from_millis(50 + crate::support::random::up_to(cap.saturating_sub(50)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> jiff::Timestamp {
        "2026-11-23T10:00:00Z".parse().unwrap()
    }

    #[test]
    fn retry_after_forms() {
        assert_eq!(retry_after("5", now()), Some(Duration::from_secs(5)));
        assert_eq!(
            retry_after("Mon, 23 Nov 2026 10:00:30 GMT", now()),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            retry_after("Mon, 23 Nov 2026 09:00:00 GMT", now()),
            Some(Duration::ZERO)
        );
        assert_eq!(retry_after("soon", now()), None);
    }

    #[test]
    fn jira_headers() {
        let mut h = HeaderMap::new();
        h.insert("x-ratelimit-reset", "2026-11-23T10:01Z".parse().unwrap());
        h.insert("ratelimit-reason", "jira-burst-based".parse().unwrap());
        let r = read(&h, now());
        assert_eq!(r.wait, Some(Duration::from_secs(60)));
        assert_eq!(r.reason.as_deref(), Some("jira-burst-based"));
        // Retry-After wins and huge values are capped.
        h.insert("retry-after", "99999".parse().unwrap());
        assert_eq!(read(&h, now()).wait, Some(MAX_WAIT));
        assert_eq!(read(&HeaderMap::new(), now()), RateLimit::default());
    }

    #[test]
    fn backoff_is_bounded_and_grows() {
        for a in 0..20 {
            let d = backoff(a);
            assert!(d >= Duration::from_millis(50) && d <= Duration::from_millis(8_050));
        }
        let max0 = (0..200).map(|_| backoff(0)).max().unwrap();
        assert!(max0 <= Duration::from_millis(300));
    }
}
