//! Connectors: the outbound side. One [`Connector`] per configured
//! connection turns a planned request into an authenticated HTTP call against
//! that connection's base URL, and never calls anything else.
//!
//! - [`rest::RestConnector`] implements the trait for the three kinds of
//!   connection; what differs between them is its [`rest::Dialect`]:
//!   ServiceNow (Table + Attachment API, `{"error":{message,detail}}` bodies,
//!   OAuth at `/oauth_token.do` with a form body), Jira (REST v3/v2,
//!   `{"errorMessages","errors"}` bodies, `X-RateLimit-Reset` and
//!   `RateLimit-Reason`, OAuth client credentials with a JSON body at
//!   `auth.atlassian.com`) and generic HTTP (JSON in, JSON out).
//! - [`auth`]: Basic (e-mail + API token, user + password), Bearer (PAT),
//!   OAuth 2.0 client credentials with the token cached until shortly before
//!   expiry. Credentials come from the [`crate::secrets::store::SecretStore`]; after a
//!   401 the secret is re-read once (rotation) and the call repeated once.
//! - [`oauth3lo`]: Atlassian OAuth 2.0 authorization code (3LO): access tokens
//!   by refresh, each rotated refresh token written back to the secret store
//!   before use; concurrent workers and revoked consent handled there.
//! - [`limits`]: `Retry-After` (seconds or HTTP date), `X-RateLimit-Reset`,
//!   bounded exponential backoff with jitter.
//!
//! Retries happen inside a [`Budget`]: a call is started only if it can finish
//! (its timeout) before the deadline, and a wait is taken only if a call can
//! still follow it. Whatever does not fit is handed back to the queue as
//! [`CallError::Retry`] with the wait the target asked for.

use crate::outbound::connections::ConnectionKind;
use crate::rules::model::Method;
#[cfg(feature = "http")]
use crate::secrets::store::SecretError;
use crate::support::error::{Class, Classified};
use async_trait::async_trait;
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// [`Connector::settle`] by kind: Jira's JQL index lags (seconds, at times
/// more), ServiceNow's lookups see committed records.
pub fn default_settle(kind: ConnectionKind) -> Duration {
    match kind {
        ConnectionKind::Jira => Duration::from_secs(30),
        _ => Duration::from_secs(10),
    }
}

/// One request, relative to the connection's base URL, with placeholders
/// already filled in.
#[derive(Clone, Debug)]
pub struct Call {
    pub method: Method,
    /// Starts with `/`; segments already percent-encoded.
    pub path: String,
    /// Not yet encoded.
    pub query: Vec<(String, String)>,
    pub headers: Vec<(String, String)>,
    pub body: CallBody,
    /// Not idempotent (a create, a comment, an upload, a journal write): if
    /// the request may have reached the target but no answer came back
    /// (timeout after sending, connection reset, 5xx), the connector does not
    /// send it again itself but answers [`CallError::Retry`] with a reason
    /// starting `outcome_unknown:`, so that the caller looks the write up
    /// before deciding to repeat it. Requests that were certainly not
    /// processed (connection refused, 429) are retried as usual.
    pub once: bool,
}

/// A request body.
#[derive(Clone, Debug)]
pub enum CallBody {
    None,
    Json(Value),
    /// A file fetched (for each attempt anew) from `source` at `url`, sent as
    /// the raw body with its `Content-Type` (ServiceNow) or as the multipart
    /// part `file` (Jira).
    File(FileSource),
}

/// Where an uploaded file comes from.
#[derive(Clone)]
pub struct FileSource {
    pub source: Arc<dyn Connector>,
    pub url: String,
    pub file_name: String,
    pub content_type: Option<String>,
    pub multipart: bool,
}

impl std::fmt::Debug for FileSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileSource")
            .field("source", &self.source.name())
            .field("url", &self.url)
            .field("file_name", &self.file_name)
            .field("content_type", &self.content_type)
            .field("multipart", &self.multipart)
            .finish()
    }
}

/// A final answer from the target (2xx, or a 4xx that retrying cannot fix).
#[derive(Clone, Debug)]
pub struct Reply {
    pub status: u16,
    /// The JSON body, when there was one.
    pub json: Option<Value>,
    /// For 4xx: a one-line summary of the target's error body.
    pub error: Option<String>,
    /// How many attempts it took (1 = first try).
    pub attempts: u32,
}

impl Reply {
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

/// Why a call produced no [`Reply`].
#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
pub enum CallError {
    /// Try again later (429, 5xx, timeout, connection error, no time left):
    /// redeliver the event, after `after` if the target said so.
    #[error("{reason}")]
    Retry {
        reason: String,
        after: Option<Duration>,
    },
    /// Retrying will not help (a URL outside the base URL, a file over the
    /// cap, a missing secret key). `reason` starts with a stable code.
    #[error("{reason}")]
    Permanent { reason: String },
}

impl crate::support::error::Classified for CallError {
    fn class(&self) -> crate::support::error::Class {
        match self {
            CallError::Retry { .. } => crate::support::error::Class::Retryable,
            CallError::Permanent { .. } => crate::support::error::Class::Permanent,
        }
    }
    /// The code the reason starts with (`rate_limited`, `target_rejected`, …).
    fn code(&self) -> &'static str {
        "call_failed"
    }
    fn reason_line(&self) -> String {
        self.to_string()
    }
}

impl CallError {
    /// Any layer's error as a call error: retryable stays retryable.
    pub fn from_classified(e: &dyn Classified) -> Self {
        match e.class() {
            Class::Retryable => CallError::retry(e.reason_line()),
            Class::Permanent => CallError::permanent(e.reason_line()),
        }
    }

    pub fn retry(reason: impl Into<String>) -> Self {
        CallError::Retry {
            reason: reason.into(),
            after: None,
        }
    }
    pub fn permanent(reason: impl Into<String>) -> Self {
        CallError::Permanent {
            reason: reason.into(),
        }
    }
}

/// A streamed download, opened against a connection.
#[cfg(feature = "http")]
pub struct Download {
    pub response: reqwest::Response,
    /// `Content-Length`, when the server sent it (already checked against the cap).
    pub length: Option<u64>,
    pub content_type: Option<String>,
    /// The size cap the stream enforces while it is read.
    pub max_bytes: u64,
}

/// The time a message may still use.
#[derive(Clone, Copy, Debug)]
pub struct Budget {
    pub deadline: Instant,
    /// Kept free at the end for reporting the batch (and deleting / dead-lettering).
    pub reserve: Duration,
}

impl Budget {
    pub fn new(deadline: Instant, reserve: Duration) -> Self {
        Self { deadline, reserve }
    }

    /// A budget of `d` from now (tests, `relay serve`).
    pub fn from_now(d: Duration) -> Self {
        Self::new(Instant::now() + d, Duration::ZERO)
    }

    /// A budget until `deadline_ms`, Unix epoch milliseconds (the Lambda
    /// runtime's invocation deadline), keeping `reserve` free. A value below
    /// 10^12 (2001-09-09) is not an epoch time but a duration: `cargo lambda
    /// watch` (1.9) sends its timeout, e.g. `600000`, in the
    /// `Lambda-Runtime-Deadline-Ms` header instead of an absolute time.
    pub fn until_unix_ms(deadline_ms: u64, now: jiff::Timestamp, reserve: Duration) -> Self {
        const EPOCH_MS_FLOOR: u64 = 1_000_000_000_000;
        let left = if deadline_ms < EPOCH_MS_FLOOR {
            Duration::from_millis(deadline_ms)
        } else {
            let now_ms = u64::try_from(now.as_millisecond()).unwrap_or(0);
            Duration::from_millis(deadline_ms.saturating_sub(now_ms))
        };
        Self::new(Instant::now() + left, reserve)
    }

    /// Time left before the reserve.
    pub fn remaining(&self) -> Duration {
        self.deadline
            .checked_duration_since(Instant::now())
            .unwrap_or_default()
            .saturating_sub(self.reserve)
    }

    /// The timeout a call starting now gets: `max` if it fits, else what is
    /// left; `None` when less than `min` is left (do not start the call).
    pub fn call_timeout(&self, max: Duration, min: Duration) -> Option<Duration> {
        let left = self.remaining();
        (left >= min).then(|| left.min(max))
    }
}

/// An outbound connection.
#[async_trait]
pub trait Connector: Send + Sync {
    fn name(&self) -> &str;
    fn kind(&self) -> ConnectionKind;
    fn base_url(&self) -> &str;
    /// How long a write may take to become visible to a lookup (a search
    /// index that lags, a commit that lands after the answer timed out). A
    /// write whose answer was lost is not sent again before this has passed
    /// and a lookup has still not found it.
    fn settle(&self) -> Duration {
        default_settle(self.kind())
    }

    /// Sends one call with auth, rate-limit handling and bounded retries
    /// within `budget`.
    async fn call(&self, call: &Call, budget: &Budget) -> Result<Reply, CallError>;

    /// Opens a download of `url` with this connection's credentials. `url`
    /// must lie under the base URL (else `attachment_url_not_allowed`); a
    /// body over `max_bytes` is `attachment_too_large`.
    #[cfg(feature = "http")]
    async fn download(
        &self,
        url: &str,
        max_bytes: u64,
        budget: &Budget,
    ) -> Result<Download, CallError>;
}

/// A transport error in words for logs and reasons: what failed and where
/// (scheme, host and path only).
#[cfg(feature = "http")]
pub(crate) fn describe(e: &reqwest::Error) -> String {
    let what = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "connection failed"
    } else if e.is_body() || e.is_decode() {
        "the body could not be transferred"
    } else if e.is_redirect() {
        "too many redirects"
    } else {
        "request failed"
    };
    match e.url() {
        // The path only: a query may carry values we should not log.
        Some(u) => format!(
            "{what} ({}://{}{})",
            u.scheme(),
            u.host_str().unwrap_or(""),
            u.path()
        ),
        None => what.to_owned(),
    }
}

/// A secret that could not be read, as a call error: retryable while the
/// store is unavailable or busy, permanent otherwise.
#[cfg(feature = "http")]
pub(crate) fn secret_error(e: SecretError) -> CallError {
    CallError::from_classified(&e)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budget_refuses_calls_that_cannot_finish() {
        let b = Budget::from_now(Duration::from_millis(300));
        assert!(b
            .call_timeout(Duration::from_secs(10), Duration::from_secs(1))
            .is_none());
        let t = b
            .call_timeout(Duration::from_secs(10), Duration::from_millis(100))
            .unwrap();
        assert!(t <= Duration::from_millis(300));
        let b = Budget::from_now(Duration::from_secs(60));
        assert_eq!(
            b.call_timeout(Duration::from_secs(10), Duration::from_secs(1)),
            Some(Duration::from_secs(10))
        );
    }
}
