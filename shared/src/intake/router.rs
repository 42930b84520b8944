//! The ingress router: `POST /webhooks/{endpoint}` and `GET /health`.
//!
//! One [`app`] serves every host: `lambda_http::run` in Lambda, `axum::serve`
//! in `relay serve`, `Router::oneshot` in tests. The status contract is what
//! Jira's retry logic needs: 202 only after the queue accepted the message;
//! 503 when the queue or the secret store is unavailable (Jira retries on
//! 5xx); 4xx for what a retry cannot fix. Callers get a short fixed message;
//! the reason goes to the log. Unknown endpoint (404) and bad credentials
//! (401) answer the same body after the same work.

use crate::config::Config;
use crate::intake::auth::{self, AuthError, Credentials};
use crate::intake::envelope::{DeliveryHeaders, Envelope};
use crate::queue::port::{OutgoingMessage, Queue, QueueError};
use crate::secrets::store::SecretStore;
use crate::support::clock::Clock;
use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;
use std::sync::Arc;
use std::time::Instant;

/// What the ingress needs; built once per process.
pub struct IngressState {
    pub config: Arc<Config>,
    pub secrets: Arc<dyn SecretStore>,
    pub queue: Arc<dyn Queue>,
    pub clock: Arc<dyn Clock>,
}

/// The ingress router.
pub fn app(state: IngressState) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/webhooks/{endpoint}", post(receive))
        .fallback(fallback)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(Arc::new(state))
}

async fn health() -> Response {
    (StatusCode::OK, Json(json!({ "status": "ok" }))).into_response()
}

async fn fallback(uri: axum::http::Uri) -> Response {
    // The path only: a query may hold a token.
    reject(
        &loggable(uri.path()),
        StatusCode::NOT_FOUND,
        "unknown_path",
        Instant::now(),
    )
}

async fn method_not_allowed(uri: axum::http::Uri) -> Response {
    reject(
        &loggable(uri.path()),
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        Instant::now(),
    )
}

/// The fixed message a caller sees for a status.
fn public_message(status: StatusCode) -> &'static str {
    match status {
        StatusCode::UNAUTHORIZED | StatusCode::NOT_FOUND => {
            "unknown endpoint or invalid credentials"
        }
        StatusCode::PAYLOAD_TOO_LARGE => "body too large",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "content type must be application/json",
        StatusCode::BAD_REQUEST => "body must be a JSON object",
        StatusCode::SERVICE_UNAVAILABLE => "temporarily unavailable, retry later",
        StatusCode::METHOD_NOT_ALLOWED => "method not allowed",
        StatusCode::REQUEST_TIMEOUT => "the body did not arrive in time",
        _ => "request failed",
    }
}

fn error_response(status: StatusCode) -> Response {
    let mut res = (status, Json(json!({ "error": public_message(status) }))).into_response();
    if status == StatusCode::SERVICE_UNAVAILABLE {
        res.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
    }
    res
}

/// The error a request body ends in when it did not arrive in time (the
/// listener's body read deadline); the intake answers it with 408.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BodyTimedOut;

impl std::fmt::Display for BodyTimedOut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the request body did not arrive in time")
    }
}

impl std::error::Error for BodyTimedOut {}

/// Whether `e` or anything that caused it is a `T`.
fn caused_by<T: std::error::Error + 'static>(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut at = Some(e);
    while let Some(e) = at {
        if e.is::<T>() {
            return true;
        }
        at = e.source();
    }
    false
}

/// Logs a refusal with its reason and answers the fixed message.
fn reject(endpoint: &str, status: StatusCode, reason: &str, started: Instant) -> Response {
    let duration_ms = started.elapsed().as_secs_f64() * 1000.0;
    crate::support::metrics::count("Rejected", &[("Reason", reason)]);
    if matches!(status, StatusCode::UNAUTHORIZED | StatusCode::NOT_FOUND) {
        crate::support::metrics::count("AuthRejected", &[]);
    }
    crate::support::metrics::latency("HandlerLatency", &[("Function", "ingress")], duration_ms);
    if status.is_server_error() {
        tracing::error!(
            endpoint,
            status = status.as_u16(),
            reason,
            outcome = "rejected",
            duration_ms,
            "webhook not accepted"
        );
    } else {
        tracing::warn!(
            endpoint,
            status = status.as_u16(),
            reason,
            outcome = "rejected",
            duration_ms,
            "webhook rejected"
        );
    }
    error_response(status)
}

fn is_json(headers: &HeaderMap) -> bool {
    let Some(value) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let essence = value
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

fn declared_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

fn delivery_headers(headers: &HeaderMap) -> DeliveryHeaders {
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    DeliveryHeaders {
        webhook_id: text("x-atlassian-webhook-identifier").map(str::to_owned),
        retry: text("x-atlassian-webhook-retry").and_then(|v| v.trim().parse().ok()),
    }
}

/// A path segment as it may be logged: bounded, printable.
fn loggable(name: &str) -> String {
    name.chars()
        .take(64)
        .map(|c| if c.is_ascii_graphic() { c } else { '?' })
        .collect()
}

async fn receive(
    State(st): State<Arc<IngressState>>,
    name: Result<Path<String>, axum::extract::rejection::PathRejection>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let started = Instant::now();
    crate::support::metrics::count("Received", &[]);
    let limit = st.config.limits.max_body_bytes;
    // A name that does not decode (not UTF-8) names no endpoint: it is
    // answered like any unknown one.
    let name = name.map(|Path(n)| n).unwrap_or_default();
    let log_name = loggable(&name);

    if declared_length(&headers).is_some_and(|n| n > limit as u64) {
        return reject(
            &log_name,
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            started,
        );
    }
    let bytes = match axum::body::to_bytes(body, limit).await {
        Ok(b) => b,
        Err(e) => {
            let too_large = caused_by::<http_body_util::LengthLimitError>(&e);
            return if caused_by::<BodyTimedOut>(&e) {
                reject(
                    &log_name,
                    StatusCode::REQUEST_TIMEOUT,
                    "body_timeout",
                    started,
                )
            } else if too_large {
                reject(
                    &log_name,
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "body_too_large",
                    started,
                )
            } else {
                reject(
                    &log_name,
                    StatusCode::BAD_REQUEST,
                    "body_unreadable",
                    started,
                )
            };
        }
    };

    let token = Credentials::token_from_query(query.as_deref());
    let creds = Credentials {
        token: token.as_deref(),
        headers: &headers,
        body: &bytes,
    };
    let Some(endpoint) = st.config.endpoint(&name) else {
        auth::equivalent_work(&creds);
        return reject(
            &log_name,
            StatusCode::NOT_FOUND,
            "unknown_endpoint",
            started,
        );
    };
    let webhook = match auth::authenticate(endpoint, st.secrets.as_ref(), creds, bytes.clone())
        .await
    {
        Ok(w) => w,
        Err(AuthError::Secret(e)) => {
            tracing::error!(endpoint = %endpoint.name, error = %e, "cannot read the endpoint's secrets");
            return reject(
                &endpoint.name,
                StatusCode::SERVICE_UNAVAILABLE,
                e.reason(),
                started,
            );
        }
        Err(e) => {
            return reject(
                &endpoint.name,
                StatusCode::UNAUTHORIZED,
                e.reason(),
                started,
            )
        }
    };

    if !is_json(&headers) {
        return reject(
            &endpoint.name,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_content_type",
            started,
        );
    }
    let envelope =
        match Envelope::from_webhook(&webhook, &delivery_headers(&headers), st.clock.now()) {
            Ok(e) => e,
            Err(e) => return reject(&endpoint.name, StatusCode::BAD_REQUEST, e.reason(), started),
        };

    match st.queue.send(OutgoingMessage::of(&envelope)).await {
        Ok(receipt) => {
            let duration_ms = started.elapsed().as_secs_f64() * 1000.0;
            crate::support::metrics::count("Enqueued", &[]);
            crate::support::metrics::latency(
                "HandlerLatency",
                &[("Function", "ingress")],
                duration_ms,
            );
            // A delivery seen within the dedup window (Jira's retry) is
            // answered 202 like the first, but nothing new was queued.
            let (outcome, reason) = if receipt.duplicate {
                ("duplicate", Some("delivery_already_queued"))
            } else {
                ("enqueued", None)
            };
            tracing::info!(
                endpoint = %envelope.endpoint,
                event = %envelope.event,
                delivery_id = %envelope.delivery_id,
                source_key = envelope.source_key.as_deref().unwrap_or(""),
                retry = envelope.retry,
                auth = webhook.method(),
                message_id = %receipt.message_id,
                outcome,
                reason,
                duration_ms,
                "webhook accepted"
            );
            (
                StatusCode::ACCEPTED,
                Json(json!({ "id": envelope.delivery_id })),
            )
                .into_response()
        }
        Err(QueueError::Rejected(detail)) => {
            tracing::warn!(endpoint = %envelope.endpoint, delivery_id = %envelope.delivery_id, detail, "queue refused the message");
            reject(
                &envelope.endpoint,
                StatusCode::BAD_REQUEST,
                "queue_rejected",
                started,
            )
        }
        Err(QueueError::Unavailable(detail)) => {
            tracing::error!(endpoint = %envelope.endpoint, delivery_id = %envelope.delivery_id, detail, "queue unavailable");
            reject(
                &envelope.endpoint,
                StatusCode::SERVICE_UNAVAILABLE,
                "queue_unavailable",
                started,
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_types() {
        let h = |v: &'static str| {
            let mut m = HeaderMap::new();
            m.insert(header::CONTENT_TYPE, HeaderValue::from_static(v));
            m
        };
        assert!(is_json(&h("application/json")));
        assert!(is_json(&h("application/json; charset=UTF-8")));
        assert!(is_json(&h("Application/JSON")));
        assert!(is_json(&h("application/vnd.api+json")));
        assert!(!is_json(&h("text/plain")));
        assert!(!is_json(&h("application/x-www-form-urlencoded")));
        assert!(!is_json(&HeaderMap::new()));
    }
}
