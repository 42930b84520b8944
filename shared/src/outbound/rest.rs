//! The REST connector: one type for ServiceNow, Jira and generic HTTP
//! connections, with a [`Dialect`] for what differs between them.
//!
//! One `reqwest::Client` (rustls, connection pool) is built once per process
//! and shared by every connector, so connections are reused across Lambda
//! invocations and across events. Every call has a timeout that fits the
//! [`Budget`]; redirects are followed at most 5 times, and reqwest drops the
//! `Authorization` header when a redirect leaves the host (Jira serves
//! attachment content through a redirect to its media host).

use super::auth::{Auth, TokenRequest};
use super::concurrency::{Limiter, Outcome};
use super::connector::{describe, Budget, Call, CallBody, CallError, Connector, Download, Reply};
use super::limits;
use crate::outbound::connections::{Connection, ConnectionKind};
use crate::rules::plan::Method;
use crate::secrets::store::SecretStore;
use crate::support::clock::{Clock, SystemClock};
use async_trait::async_trait;
use futures_util::StreamExt;
use http::HeaderValue;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// What differs between the kinds of target.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dialect {
    ServiceNow,
    Jira,
    Http,
}

impl Dialect {
    pub fn of(kind: ConnectionKind) -> Self {
        match kind {
            ConnectionKind::Servicenow => Dialect::ServiceNow,
            ConnectionKind::Jira => Dialect::Jira,
            ConnectionKind::Http => Dialect::Http,
        }
    }

    fn token_request(self) -> TokenRequest {
        match self {
            Dialect::Jira => TokenRequest::Json,
            Dialect::ServiceNow | Dialect::Http => TokenRequest::Form,
        }
    }

    /// A one-line summary of an error body, at most 300 characters.
    pub fn error_summary(self, body: &[u8]) -> String {
        let json: Option<serde_json::Value> = serde_json::from_slice(body).ok();
        let text = match (self, &json) {
            // {"error":{"message":"…","detail":"…"},"status":"failure"}
            (Dialect::ServiceNow, Some(v)) if v.get("error").is_some() => {
                let e = &v["error"];
                let msg = e.get("message").and_then(|m| m.as_str()).unwrap_or("");
                match e.get("detail").and_then(|d| d.as_str()) {
                    Some(d) if !d.is_empty() => format!("{msg}: {d}"),
                    _ => msg.to_owned(),
                }
            }
            // {"errorMessages":["…"],"errors":{"field":"…"}}
            (Dialect::Jira, Some(v))
                if v.get("errorMessages").is_some() || v.get("errors").is_some() =>
            {
                let mut parts: Vec<String> = v
                    .get("errorMessages")
                    .and_then(|m| m.as_array())
                    .into_iter()
                    .flatten()
                    .filter_map(|m| m.as_str().map(str::to_owned))
                    .collect();
                if let Some(errors) = v.get("errors").and_then(|e| e.as_object()) {
                    for (k, m) in errors {
                        parts.push(format!("{k}: {}", m.as_str().unwrap_or("invalid")));
                    }
                }
                parts.join("; ")
            }
            _ => String::from_utf8_lossy(body).into_owned(),
        };
        let clean: String = text
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .take(300)
            .collect();
        let clean = clean.trim();
        if clean.is_empty() {
            "(no error text)".to_owned()
        } else {
            clean.to_owned()
        }
    }
}

/// Timeouts, retries and caps for outbound calls.
#[derive(Clone, Debug)]
pub struct ConnectorSettings {
    /// The longest a single call may take.
    pub call_timeout: Duration,
    /// A call is not started with less than this left in the budget.
    pub min_call: Duration,
    /// Attempts per call (first try included) before handing back to the queue.
    pub max_attempts: u32,
    /// The longest in-process wait between attempts; longer waits go back to the queue.
    pub max_wait: Duration,
    /// Attachments larger than this are not transferred (`attachment_too_large`).
    pub max_attachment_bytes: u64,
    /// [`Connector::settle`] for every connection; `None`: by kind
    /// ([`super::default_settle`]).
    pub settle: Option<Duration>,
    /// Wall time, for `Retry-After` dates and rate-limit resets.
    pub clock: Arc<dyn Clock>,
}

impl Default for ConnectorSettings {
    fn default() -> Self {
        Self {
            call_timeout: Duration::from_secs(10),
            min_call: Duration::from_millis(1500),
            max_attempts: 4,
            max_wait: Duration::from_secs(10),
            max_attachment_bytes: 20 * 1024 * 1024,
            settle: None,
            clock: Arc::new(SystemClock),
        }
    }
}

/// The process-wide HTTP client.
pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .use_rustls_tls()
        .connect_timeout(Duration::from_secs(5))
        .pool_idle_timeout(Duration::from_secs(90))
        .redirect(reqwest::redirect::Policy::limited(5))
        .user_agent(concat!("jira-relay/", env!("CARGO_PKG_VERSION")))
        .build()
        .unwrap_or_else(|_| reqwest::Client::new())
}

/// Hosts a Jira Cloud attachment download may be redirected to: Jira serves
/// attachment content through its media host.
const JIRA_MEDIA_HOSTS: &[&str] = &["api.media.atlassian.com"];

/// Whether a download may follow a redirect to `next`: under the
/// connection's base URL, or (Jira) over https to Jira Cloud's media host.
/// Every hop is checked, so a chain cannot leave through a second redirect.
pub fn redirect_allowed(next: &url::Url, base_url: &str, kind: ConnectionKind) -> bool {
    if crate::support::url::url_is_under(next.as_str(), base_url) {
        return true;
    }
    kind == ConnectionKind::Jira
        && next.scheme() == "https"
        && next.username().is_empty()
        && next
            .host_str()
            .is_some_and(|h| JIRA_MEDIA_HOSTS.contains(&h))
}

/// The client attachment downloads of one connection use: like
/// [`http_client`], but a redirect is followed only where
/// [`redirect_allowed`] says (the source's credentials never leave with it:
/// reqwest also drops `Authorization` when the host changes).
fn download_client(base_url: &str, kind: ConnectionKind) -> reqwest::Client {
    let base = base_url.to_owned();
    let policy = reqwest::redirect::Policy::custom(move |attempt| {
        if attempt.previous().len() >= 5 {
            attempt.error("too many redirects")
        } else if redirect_allowed(attempt.url(), &base, kind) {
            attempt.follow()
        } else {
            attempt.stop()
        }
    });
    reqwest::Client::builder()
        .use_rustls_tls()
        .connect_timeout(Duration::from_secs(5))
        .pool_idle_timeout(Duration::from_secs(90))
        .redirect(policy)
        .user_agent(concat!("jira-relay/", env!("CARGO_PKG_VERSION")))
        .build()
        .unwrap_or_else(|_| reqwest::Client::new())
}

/// A short, secret-free description of a transport error.
fn method(m: Method) -> reqwest::Method {
    match m {
        Method::Get => reqwest::Method::GET,
        Method::Post => reqwest::Method::POST,
        Method::Put => reqwest::Method::PUT,
        Method::Patch => reqwest::Method::PATCH,
        Method::Delete => reqwest::Method::DELETE,
    }
}

fn retryable(status: u16) -> bool {
    matches!(status, 408 | 409 | 423 | 425 | 429 | 500..=599)
}

/// One outbound connection.
pub struct RestConnector {
    conn: Connection,
    dialect: Dialect,
    client: reqwest::Client,
    /// Attachment downloads: redirects checked hop by hop.
    downloads: reqwest::Client,
    secrets: Arc<dyn SecretStore>,
    auth: Auth,
    settings: ConnectorSettings,
    /// Calls in flight to this connection (adaptive below `concurrency.max`).
    limiter: Limiter,
}

impl std::fmt::Debug for RestConnector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RestConnector")
            .field("name", &self.conn.name)
            .field("dialect", &self.dialect)
            .field("base_url", &self.conn.base_url)
            .finish_non_exhaustive()
    }
}

/// What one attempt sends.
enum Outbound<'a> {
    Call(&'a Call),
    Download(&'a url::Url),
}

impl RestConnector {
    pub fn new(
        conn: Connection,
        client: reqwest::Client,
        secrets: Arc<dyn SecretStore>,
        settings: ConnectorSettings,
    ) -> Self {
        let dialect = Dialect::of(conn.kind);
        let auth = Auth::new(conn.auth.clone(), dialect.token_request());
        let downloads = download_client(&conn.base_url, conn.kind);
        let limiter = Limiter::new(&conn.name, conn.concurrency);
        Self {
            limiter,
            conn,
            dialect,
            client,
            downloads,
            secrets,
            auth,
            settings,
        }
    }

    pub fn settings(&self) -> &ConnectorSettings {
        &self.settings
    }

    /// OAuth access tokens fetched so far (tests, metrics).
    pub fn oauth_tokens_fetched(&self) -> u64 {
        self.auth.tokens_fetched()
    }

    fn url(&self, call: &Call) -> Result<url::Url, CallError> {
        if !call.path.starts_with('/') || call.path.contains("/../") {
            return Err(CallError::permanent(format!(
                "mapping_error: request path `{}` is not a path under the base URL",
                call.path
            )));
        }
        let mut url = url::Url::parse(&format!("{}{}", self.conn.base_url, call.path))
            .map_err(|e| CallError::permanent(format!("mapping_error: bad request URL: {e}")))?;
        if !call.query.is_empty() {
            let mut q = url.query_pairs_mut();
            for (k, v) in &call.query {
                q.append_pair(k, v);
            }
        }
        Ok(url)
    }

    /// Builds one attempt. Returns the request and, for file uploads, the
    /// flag the size-capped stream sets when the file turns out too large.
    async fn build(
        &self,
        out: &Outbound<'_>,
        auth: HeaderValue,
        timeout: Duration,
        budget: &Budget,
    ) -> Result<(reqwest::RequestBuilder, Option<Arc<AtomicBool>>), CallError> {
        let mut overflow = None;
        let req = match out {
            Outbound::Download(url) => self
                .downloads
                .get((*url).clone())
                .header(http::header::ACCEPT, "*/*"),
            Outbound::Call(call) => {
                let mut req = self
                    .client
                    .request(method(call.method), self.url(call)?)
                    .header(http::header::ACCEPT, "application/json");
                for (k, v) in &self.conn.headers {
                    req = req.header(k.as_str(), v.as_str());
                }
                for (k, v) in &call.headers {
                    req = req.header(k.as_str(), v.as_str());
                }
                match &call.body {
                    CallBody::None => req,
                    CallBody::Json(v) => req.json(v),
                    CallBody::File(f) => {
                        let dl = f
                            .source
                            .download(&f.url, self.settings.max_attachment_bytes, budget)
                            .await?;
                        let content_type = f
                            .content_type
                            .clone()
                            .or(dl.content_type.clone())
                            .unwrap_or_else(|| "application/octet-stream".to_owned());
                        let flag = Arc::new(AtomicBool::new(false));
                        overflow = Some(flag.clone());
                        let length = dl.length;
                        let body = capped_body(dl, flag);
                        if f.multipart {
                            let part = match length {
                                Some(n) => reqwest::multipart::Part::stream_with_length(body, n),
                                None => reqwest::multipart::Part::stream(body),
                            }
                            .file_name(f.file_name.clone())
                            .mime_str(&content_type)
                            .map_err(|_| {
                                CallError::permanent(format!(
                                    "mapping_error: `{content_type}` is not a MIME type"
                                ))
                            })?;
                            req.multipart(reqwest::multipart::Form::new().part("file", part))
                        } else {
                            let req = req.header(http::header::CONTENT_TYPE, content_type);
                            let req = match length {
                                Some(n) => req.header(http::header::CONTENT_LENGTH, n),
                                None => req,
                            };
                            req.body(body)
                        }
                    }
                }
            }
        };
        Ok((
            req.header(http::header::AUTHORIZATION, auth)
                .timeout(timeout),
            overflow,
        ))
    }

    /// Notes one attempt into the delivery journal (method, path, status,
    /// duration; a download's query string, which may carry a signature, is left out).
    fn note_call(
        &self,
        out: &Outbound<'_>,
        answer: &Result<reqwest::Response, reqwest::Error>,
        sent: Instant,
    ) {
        let (method, mut path) = match out {
            Outbound::Call(c) => (format!("{:?}", c.method).to_uppercase(), c.path.clone()),
            Outbound::Download(u) => ("GET".to_owned(), u.path().to_owned()),
        };
        if path.len() > 300 {
            let mut cut = 300;
            while !path.is_char_boundary(cut) {
                cut -= 1;
            }
            path.truncate(cut);
            path.push('…');
        }
        crate::journal::calls::note(crate::journal::CallMade {
            connection: self.conn.name.clone(),
            method,
            path,
            status: answer.as_ref().ok().map(|r| r.status().as_u16()),
            duration_ms: sent.elapsed().as_millis() as u64,
            error: answer.as_ref().err().map(|e| {
                if e.is_timeout() {
                    "timeout".to_owned()
                } else {
                    format!("unreachable: {}", describe(e))
                }
            }),
        });
    }

    /// Sends with auth refresh on 401, retries of 429/5xx/transport errors
    /// within the budget. Returns the final response (2xx or a 4xx).
    async fn exchange(
        &self,
        out: Outbound<'_>,
        budget: &Budget,
    ) -> Result<(reqwest::Response, u32), CallError> {
        let s = &self.settings;
        let once = matches!(&out, Outbound::Call(c) if c.once);
        let mut attempt = 0u32;
        let mut refreshed = false;
        let mut fresh = false;
        let mut last: Option<(String, Option<Duration>)> = None;
        loop {
            if budget.call_timeout(s.call_timeout, s.min_call).is_none() {
                let (reason, after) = last.unwrap_or_else(|| {
                    (
                        "deadline: not enough time left for the call".to_owned(),
                        None,
                    )
                });
                return Err(CallError::Retry { reason, after });
            }
            // A slot on the connection first: the wait counts against the
            // budget, and the call still needs `min_call` once it has one.
            let slot_by = Instant::now() + budget.remaining().saturating_sub(s.min_call);
            let permit = self.limiter.acquire(slot_by).await.map_err(|n| {
                let (reason, after) = last.clone().unwrap_or_else(|| {
                    (
                        format!(
                            "deadline: no free call slot on {} ({} calls in flight, limit {})",
                            self.conn.name, n.in_flight, n.limit
                        ),
                        None,
                    )
                });
                CallError::Retry { reason, after }
            })?;
            let Some(timeout) = budget.call_timeout(s.call_timeout, s.min_call) else {
                continue;
            };
            let auth = self
                .auth
                .header(&*self.secrets, &self.client, fresh, budget)
                .await?;
            fresh = false;
            let (req, overflow) = self.build(&out, auth, timeout, budget).await?;
            attempt += 1;
            let sent = Instant::now();
            let answer = req.send().await;
            self.note_call(&out, &answer, sent);
            // How the target coped, for the connection's limit: a file's
            // transfer time says nothing about its load.
            let sampled = matches!(&out, Outbound::Call(c) if !matches!(c.body, CallBody::File(_)));
            permit.done(match &answer {
                Ok(r) if matches!(r.status().as_u16(), 429 | 503) => Outcome::Overloaded,
                Ok(_) if sampled => Outcome::Answered,
                Err(e) if e.is_timeout() => Outcome::Overloaded,
                _ => Outcome::Unsampled,
            });
            let (reason, asked) = match answer {
                Ok(resp) => {
                    let status = resp.status().as_u16();
                    if status == 401 && !refreshed {
                        refreshed = true;
                        fresh = true;
                        attempt -= 1;
                        tracing::warn!(
                            connection = %self.conn.name,
                            "target answered 401; re-reading the credentials once"
                        );
                        continue;
                    }
                    if !retryable(status) {
                        return Ok((resp, attempt));
                    }
                    // 429 and 503 say the request was not handled (RFC 9110
                    // §15.6.4); any other error answer to a write that must
                    // not run twice (a 500 from a failing business rule, a
                    // gateway's 502/504) may have come after the commit.
                    let unsure = once && !matches!(status, 429 | 503);
                    let rl = limits::read(resp.headers(), self.settings.clock.now());
                    let body = read_limited(resp, 16 * 1024).await.unwrap_or_default();
                    let summary = self.dialect.error_summary(&body);
                    let reason = match status {
                        429 => match &rl.reason {
                            Some(r) => format!("rate_limited: 429 ({r}) from {}", self.conn.name),
                            None => format!("rate_limited: 429 from {}", self.conn.name),
                        },
                        _ => format!(
                            "target_unavailable: {status} from {}: {summary}",
                            self.conn.name
                        ),
                    };
                    if let Some(r) = &rl.reason {
                        tracing::warn!(connection = %self.conn.name, rate_limit_reason = %r, "rate limited");
                    }
                    if unsure {
                        return Err(CallError::Retry {
                            reason: format!("outcome_unknown: {reason}"),
                            after: rl.wait,
                        });
                    }
                    (reason, rl.wait)
                }
                Err(e) => {
                    if overflow.is_some_and(|f| f.load(Ordering::Relaxed)) {
                        return Err(CallError::permanent(format!(
                            "attachment_too_large: the file is larger than {} bytes",
                            s.max_attachment_bytes
                        )));
                    }
                    let kind = if e.is_timeout() {
                        "timeout"
                    } else {
                        "unreachable"
                    };
                    let reason = format!("{kind}: {} {}", self.conn.name, describe(&e));
                    // Not connected: nothing was sent. Anything later (a
                    // timeout, a reset) may have followed the commit.
                    if once && !e.is_connect() {
                        return Err(CallError::Retry {
                            reason: format!("outcome_unknown: {reason}"),
                            after: None,
                        });
                    }
                    (reason, None)
                }
            };
            let wait = asked.unwrap_or_else(|| limits::backoff(attempt - 1));
            let fits = budget.remaining() >= wait + s.min_call;
            if attempt >= s.max_attempts || wait > s.max_wait || !fits {
                return Err(CallError::Retry {
                    reason,
                    after: asked,
                });
            }
            tracing::info!(
                connection = %self.conn.name,
                attempt,
                wait_ms = wait.as_millis() as u64,
                reason = %reason,
                "retrying call"
            );
            last = Some((reason, asked));
            tokio::time::sleep(wait).await;
        }
    }
}

/// Wraps a download into a body stream that fails (and sets `overflow`)
/// once more than `max_bytes` went through.
fn capped_body(dl: Download, overflow: Arc<AtomicBool>) -> reqwest::Body {
    let max = dl.max_bytes;
    let mut seen = 0u64;
    type BoxError = Box<dyn std::error::Error + Send + Sync>;
    let stream = dl
        .response
        .bytes_stream()
        .map(move |chunk| -> Result<bytes::Bytes, BoxError> {
            let chunk = chunk.map_err(|e| -> BoxError { Box::new(e) })?;
            seen += chunk.len() as u64;
            if seen > max {
                overflow.store(true, Ordering::Relaxed);
                return Err("attachment_too_large".into());
            }
            Ok(chunk)
        });
    reqwest::Body::wrap_stream(stream)
}

/// Reads at most `max` bytes of a body (the rest is dropped).
async fn read_limited(resp: reqwest::Response, max: usize) -> Result<Vec<u8>, reqwest::Error> {
    let mut out = Vec::new();
    let mut stream = resp.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk?;
        let take = chunk.len().min(max - out.len());
        out.extend_from_slice(&chunk[..take]);
        if out.len() >= max {
            break;
        }
    }
    Ok(out)
}

#[async_trait]
impl Connector for RestConnector {
    fn name(&self) -> &str {
        &self.conn.name
    }

    fn kind(&self) -> ConnectionKind {
        self.conn.kind
    }

    fn base_url(&self) -> &str {
        &self.conn.base_url
    }

    fn settle(&self) -> Duration {
        self.settings
            .settle
            .unwrap_or_else(|| super::connector::default_settle(self.conn.kind))
    }

    async fn call(&self, call: &Call, budget: &Budget) -> Result<Reply, CallError> {
        let started = Instant::now();
        let (resp, attempts) = self.exchange(Outbound::Call(call), budget).await?;
        let status = resp.status().as_u16();
        let body = read_limited(resp, 8 * 1024 * 1024).await.map_err(|e| {
            CallError::retry(format!(
                "unreachable: {} reply cut off: {}",
                self.conn.name,
                describe(&e)
            ))
        })?;
        let json = serde_json::from_slice(&body).ok();
        let error = (!(200..300).contains(&status)).then(|| self.dialect.error_summary(&body));
        crate::support::metrics::latency(
            "ConnectorLatency",
            &[("Connection", &self.conn.name)],
            started.elapsed().as_secs_f64() * 1000.0,
        );
        tracing::debug!(
            connection = %self.conn.name,
            method = ?call.method,
            path = %call.path,
            status,
            attempts,
            duration_ms = started.elapsed().as_millis() as u64,
            "call"
        );
        Ok(Reply {
            status,
            json,
            error,
            attempts,
        })
    }

    async fn download(
        &self,
        url: &str,
        max_bytes: u64,
        budget: &Budget,
    ) -> Result<Download, CallError> {
        if !crate::support::url::url_is_under(url, &self.conn.base_url) {
            return Err(CallError::permanent(format!(
                "attachment_url_not_allowed: `{url}` is not under {} (connection `{}`)",
                self.conn.base_url, self.conn.name
            )));
        }
        let parsed = url::Url::parse(url)
            .map_err(|_| CallError::permanent("attachment_url_not_allowed: not a URL"))?;
        let (resp, _) = self.exchange(Outbound::Download(&parsed), budget).await?;
        let status = resp.status().as_u16();
        if (300..400).contains(&status) {
            // The redirect policy stopped here: the next hop is not allowed.
            let to = resp
                .headers()
                .get(http::header::LOCATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|l| resp.url().join(l).ok())
                .map(|u| format!("{}://{}", u.scheme(), u.host_str().unwrap_or("")))
                .unwrap_or_else(|| "(no location)".into());
            return Err(CallError::permanent(format!(
                "attachment_redirect_not_allowed: {status} from {} to {to}, which is neither under {} nor a known media host; not followed",
                self.conn.name, self.conn.base_url
            )));
        }
        if !(200..300).contains(&status) {
            let body = read_limited(resp, 16 * 1024).await.unwrap_or_default();
            let summary = self.dialect.error_summary(&body);
            return Err(if status == 401 {
                CallError::retry(format!(
                    "target_unauthorized: 401 from {} fetching the attachment: {summary}",
                    self.conn.name
                ))
            } else {
                CallError::permanent(format!(
                    "attachment_unavailable: {status} from {} fetching the attachment: {summary}",
                    self.conn.name
                ))
            });
        }
        let length = resp.content_length();
        if let Some(n) = length {
            if n > max_bytes {
                return Err(CallError::permanent(format!(
                    "attachment_too_large: {n} bytes, the cap is {max_bytes}"
                )));
            }
        }
        let content_type = resp
            .headers()
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        Ok(Download {
            response: resp,
            length,
            content_type,
            max_bytes,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirect_hops_are_checked() {
        let u = |s: &str| url::Url::parse(s).unwrap();
        let base = "https://acme.atlassian.net";
        let jira = ConnectionKind::Jira;
        assert!(redirect_allowed(
            &u("https://acme.atlassian.net/secure/x"),
            base,
            jira
        ));
        assert!(redirect_allowed(
            &u("https://api.media.atlassian.com/file/1"),
            base,
            jira
        ));
        assert!(!redirect_allowed(
            &u("http://api.media.atlassian.com/file/1"),
            base,
            jira
        ));
        assert!(!redirect_allowed(&u("https://evil.example/x"), base, jira));
        assert!(!redirect_allowed(
            &u("https://acme.atlassian.net.evil.example/x"),
            base,
            jira
        ));
        let sn = ConnectionKind::Servicenow;
        assert!(!redirect_allowed(
            &u("https://api.media.atlassian.com/file/1"),
            "https://x.service-now.com",
            sn
        ));
        assert!(!redirect_allowed(
            &u("http://127.0.0.1:9/x"),
            "http://127.0.0.1:8/",
            sn
        ));
    }

    #[test]
    fn error_summaries() {
        let sn =
            br#"{"error":{"message":"Invalid table","detail":"incidentx"},"status":"failure"}"#;
        assert_eq!(
            Dialect::ServiceNow.error_summary(sn),
            "Invalid table: incidentx"
        );
        let jira = br#"{"errorMessages":["Issue does not exist"],"errors":{"resolution":"Resolution is required."}}"#;
        assert_eq!(
            Dialect::Jira.error_summary(jira),
            "Issue does not exist; resolution: Resolution is required."
        );
        assert_eq!(Dialect::Http.error_summary(b"bad\nthing"), "bad thing");
        assert_eq!(Dialect::Http.error_summary(b""), "(no error text)");
        let long = vec![b'x'; 1000];
        assert_eq!(Dialect::Http.error_summary(&long).len(), 300);
    }
}
