//! Fault injection shared by the test servers ([`crate::jira_server`],
//! [`crate::servicenow_server`]), plus the small helpers both use (request
//! recording, query parsing, timestamps, a deterministic PRNG).
//!
//! Test support only. A faulted request never changes a server's state —
//! except [`Fault::AnswerLost`]: that write IS applied (the state changes
//! exactly as for a normal request) and then the client never gets the
//! answer ("committed, answer lost"), either because the connection is cut
//! without a response ([`AnswerLostMode::Drop`]) or because the answer comes
//! only after a delay longer than the client waits ([`AnswerLostMode::Late`]).
//! It applies only to the writes each server lists (creates, comments,
//! attachments, edits, transitions) and only when they succeed (2xx): a
//! refused write is answered normally and does not use the fault up.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::response::Response;
use http::{HeaderValue, Method, StatusCode};

/// One injected failure.
#[derive(Debug, Clone)]
pub enum Fault {
    /// Answer with this status (and optional `Retry-After`, extra headers,
    /// body; without a body the server's usual error shape is used).
    Status {
        status: u16,
        retry_after: Option<String>,
        headers: Vec<(String, String)>,
        body: Option<String>,
    },
    /// Sleep this long, then answer 504.
    Timeout(Duration),
    /// Answer 401 with the server's usual unauthenticated body.
    Unauthorized,
    /// Answer normally (scripted first, it lets requests through before a
    /// fault pushed after it: "fail the second page").
    Pass,
    /// Committed, answer lost: the write is applied, then the answer is
    /// lost as `mode` says. Only write requests that succeed take it (see
    /// the module doc); other requests pass it by.
    AnswerLost(AnswerLostMode),
}

/// How the answer of an applied write is lost ([`Fault::AnswerLost`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AnswerLostMode {
    /// The connection is closed without a response (no status line, no
    /// byte of the answer): the client sees a transport error (reqwest:
    /// `is_request()`, "connection closed before message completed").
    Drop,
    /// The answer is sent only after sleeping this long (the write is
    /// already applied before the sleep): a client with a shorter timeout
    /// gives up.
    Late(Duration),
}

impl Fault {
    /// `Fault::Status` with only a status code.
    pub fn status(status: u16) -> Self {
        Fault::Status {
            status,
            retry_after: None,
            headers: Vec::new(),
            body: None,
        }
    }

    /// A 429 with `Retry-After: <secs>`.
    pub fn rate_limited(retry_after_secs: u64) -> Self {
        Fault::Status {
            status: 429,
            retry_after: Some(retry_after_secs.to_string()),
            headers: Vec::new(),
            body: None,
        }
    }

    /// Committed, answer lost, by closing the connection.
    pub fn answer_dropped() -> Self {
        Fault::AnswerLost(AnswerLostMode::Drop)
    }

    /// Committed, answer lost, by answering only after `delay`.
    pub fn answer_late(delay: Duration) -> Self {
        Fault::AnswerLost(AnswerLostMode::Late(delay))
    }

    /// What [`Faults::injected`] reports: the status code (`"429"`,
    /// `"503"`), `"timeout"`, `"401"` or `"answer_lost"`.
    pub fn kind(&self) -> String {
        match self {
            Fault::Status { status, .. } => status.to_string(),
            Fault::Timeout(_) => "timeout".into(),
            Fault::Unauthorized => "401".into(),
            Fault::Pass => "pass".into(),
            Fault::AnswerLost(_) => "answer_lost".into(),
        }
    }
}

/// Which requests a scripted fault applies to. `None` fields match anything.
#[derive(Debug, Clone, Default)]
pub struct Match {
    pub method: Option<Method>,
    pub path_contains: Option<String>,
}

impl Match {
    /// Every request.
    pub fn any() -> Self {
        Self::default()
    }
    /// Requests whose path contains `fragment`.
    pub fn path(fragment: &str) -> Self {
        Match {
            method: None,
            path_contains: Some(fragment.to_string()),
        }
    }
    /// Requests with this method whose path contains `fragment`.
    pub fn method_path(method: Method, fragment: &str) -> Self {
        Match {
            method: Some(method),
            path_contains: Some(fragment.to_string()),
        }
    }
    fn matches(&self, method: &Method, path: &str) -> bool {
        self.method.as_ref().is_none_or(|m| m == method)
            && self
                .path_contains
                .as_deref()
                .is_none_or(|p| path.contains(p))
    }
}

/// Random fault rates for soak tests, each a fraction in `0.0..=1.0` of all
/// requests (they add up; what is left is answered normally). Construct
/// with `..Rates::default()` so that new rates stay off.
#[derive(Debug, Clone, Default)]
pub struct Rates {
    /// 503 answers.
    pub server_error: f64,
    /// 429 answers with `Retry-After: 1` (Jira also sends
    /// `RateLimit-Reason: jira-burst-based` and `X-RateLimit-Reset`).
    pub rate_limited: f64,
    /// Sleep `timeout_ms`, then 504.
    pub timeout: f64,
    pub timeout_ms: u64,
    /// Fraction of the server's *write* requests (see the module doc) that
    /// are applied and then lose their answer ([`Fault::AnswerLost`]); the
    /// mode alternates, [`AnswerLostMode::Drop`] first, then
    /// [`AnswerLostMode::Late`] of `answer_lost_late_ms`. Drawn from the
    /// same single draw per request as the rates above (after them), so
    /// adding it does not change which requests those hit.
    pub answer_lost: f64,
    /// The delay of the `Late` answers of `answer_lost` (milliseconds).
    pub answer_lost_late_ms: u64,
}

/// Which server's error conventions a fault response follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    Jira,
    ServiceNow,
}

/// The fault plan of one server. Cheap to clone (shared state).
#[derive(Debug, Clone, Default)]
pub struct Faults {
    inner: Arc<Mutex<FaultState>>,
}

#[derive(Debug, Default)]
struct FaultState {
    /// (id, matcher, fault, uses left)
    scripted: Vec<(u64, Match, Fault, usize)>,
    next_id: u64,
    rates: Option<(Rates, XorShift)>,
    /// `AnswerLost` faults drawn from the rates so far (picks the mode).
    rate_answer_lost: u64,
    injected: Vec<(String, String)>,
}

/// What [`Faults::take_request`] decided for one request.
#[derive(Debug, Clone)]
pub(crate) enum Taken {
    /// Answer with this fault now (the request is not handled).
    Now(Fault),
    /// Handle the write; if it succeeds, lose its answer with
    /// [`Faults::answer_lost_applied`] (scripted: the entry's id).
    AfterWrite(AnswerLostMode, Option<u64>),
}

impl Faults {
    /// The next `times` requests matching `matcher` get `fault` (scripted
    /// faults are consulted in the order pushed, before random rates).
    pub fn push(&self, matcher: Match, fault: Fault, times: usize) {
        if times > 0 {
            let mut s = lock(&self.inner);
            let id = s.next_id;
            s.next_id += 1;
            s.scripted.push((id, matcher, fault, times));
        }
    }

    /// Random faults at these rates from now on, drawn from a PRNG seeded
    /// with `seed` (same seed and request order, same faults).
    pub fn set_rates(&self, rates: Rates, seed: u64) {
        lock(&self.inner).rates = Some((rates, XorShift::new(seed)));
    }

    /// Drops scripted faults and rates (not the `injected` log).
    pub fn clear(&self) {
        let mut s = lock(&self.inner);
        s.scripted.clear();
        s.rates = None;
    }

    /// What was injected so far: (`"METHOD /path"`, [`Fault::kind`]). An
    /// `"answer_lost"` entry is written once the write was applied.
    pub fn injected(&self) -> Vec<(String, String)> {
        lock(&self.inner).injected.clone()
    }

    /// How many faults of this [`Fault::kind`] were injected so far
    /// (`"answer_lost"`, `"503"`, `"429"`, `"timeout"`, `"401"`).
    pub fn count(&self, kind: &str) -> usize {
        lock(&self.inner)
            .injected
            .iter()
            .filter(|(_, k)| k == kind)
            .count()
    }

    /// The fault for this request, if any (consumes one scripted use). A
    /// non-write request: `AnswerLost` faults pass it by.
    #[cfg(test)]
    pub(crate) fn take(&self, method: &Method, path: &str) -> Option<Fault> {
        match self.take_request(method, path, false)? {
            Taken::Now(f) => Some(f),
            Taken::AfterWrite(mode, _) => Some(Fault::AnswerLost(mode)),
        }
    }

    /// The fault for this request, if any. Other faults are consumed (and
    /// logged) here; an `AnswerLost` one only for a write (`is_write`), and
    /// it is consumed and logged by [`Faults::answer_lost_applied`] once
    /// the write succeeded (a failed write leaves a scripted one in place).
    pub(crate) fn take_request(
        &self,
        method: &Method,
        path: &str,
        is_write: bool,
    ) -> Option<Taken> {
        let mut guard = lock(&self.inner);
        let s = &mut *guard;
        let mut chosen = None;
        let found = s.scripted.iter().position(|(_, m, f, n)| {
            *n > 0 && m.matches(method, path) && (is_write || !matches!(f, Fault::AnswerLost(_)))
        });
        if let Some(i) = found {
            let entry = &mut s.scripted[i];
            if let Fault::AnswerLost(mode) = entry.2 {
                return Some(Taken::AfterWrite(mode, Some(entry.0)));
            }
            entry.3 -= 1;
            chosen = Some(entry.2.clone()).filter(|f| !matches!(f, Fault::Pass));
            if entry.3 == 0 {
                s.scripted.remove(i);
            }
        } else if let Some((rates, rng)) = s.rates.as_mut() {
            let x = rng.next_f64();
            let timeouts = rates.server_error + rates.rate_limited + rates.timeout;
            if x < rates.server_error {
                chosen = Some(Fault::status(503));
            } else if x < rates.server_error + rates.rate_limited {
                chosen = Some(Fault::Status {
                    status: 429,
                    retry_after: Some("1".into()),
                    headers: Vec::new(),
                    body: None,
                });
            } else if x < timeouts {
                chosen = Some(Fault::Timeout(Duration::from_millis(rates.timeout_ms)));
            } else if is_write && x < timeouts + rates.answer_lost {
                let late = Duration::from_millis(rates.answer_lost_late_ms);
                let n = s.rate_answer_lost;
                s.rate_answer_lost += 1;
                let mode = if n.is_multiple_of(2) {
                    AnswerLostMode::Drop
                } else {
                    AnswerLostMode::Late(late)
                };
                return Some(Taken::AfterWrite(mode, None));
            }
        }
        if let Some(f) = &chosen {
            s.injected.push((format!("{method} {path}"), f.kind()));
        }
        chosen.map(Taken::Now)
    }

    /// The write taken as [`Taken::AfterWrite`] succeeded: consume the
    /// scripted use and log `"answer_lost"`.
    pub(crate) fn answer_lost_applied(&self, method: &Method, path: &str, scripted: Option<u64>) {
        let mut s = lock(&self.inner);
        if let Some(id) = scripted {
            if let Some(i) = s.scripted.iter().position(|e| e.0 == id) {
                s.scripted[i].3 = s.scripted[i].3.saturating_sub(1);
                if s.scripted[i].3 == 0 {
                    s.scripted.remove(i);
                }
            }
        }
        s.injected
            .push((format!("{method} {path}"), "answer_lost".into()));
    }
}

/// Serves one request under the faults, for every route of a server: a
/// fault drawn for it ([`Faults::take_request`]; `is_write` says whether
/// [`Fault::AnswerLost`] may hit it) answers instead of the server, in its
/// `flavor`; otherwise `dispatch` answers, and a successful write taken as
/// answer lost loses its answer ([`finish`]).
pub(crate) async fn serve_request(
    faults: &Faults,
    flavor: Flavor,
    parts: &http::request::Parts,
    path: &str,
    is_write: bool,
    dispatch: impl FnOnce() -> Response,
) -> Response {
    let taken = match faults.take_request(&parts.method, path, is_write) {
        Some(Taken::Now(f)) => return respond(f, flavor).await,
        other => other,
    };
    let conn = conn_tag(parts);
    let resp = dispatch();
    finish(faults, taken, &parts.method, path, conn.as_ref(), resp).await
}

/// Handles the outcome of one request: `taken` is what
/// [`Faults::take_request`] gave for it (if anything), `resp` the handler's
/// answer. A successful write taken as [`Taken::AfterWrite`] loses its
/// answer here; anything else is answered as is.
async fn finish(
    faults: &Faults,
    taken: Option<Taken>,
    method: &Method,
    path: &str,
    conn: Option<&ConnTag>,
    resp: Response,
) -> Response {
    let Some(Taken::AfterWrite(mode, scripted)) = taken else {
        return resp;
    };
    if !resp.status().is_success() {
        return resp;
    }
    faults.answer_lost_applied(method, path, scripted);
    match mode {
        AnswerLostMode::Drop => {
            if let Some(c) = conn {
                c.cut();
            }
            resp
        }
        AnswerLostMode::Late(d) => {
            tokio::time::sleep(d).await;
            resp
        }
    }
}

// ---- connections that can be cut ----

/// One accepted connection as a handler sees it (axum `ConnectInfo`): the
/// peer, and the switch that cuts the connection.
#[derive(Debug, Clone)]
pub(crate) struct ConnTag {
    #[allow(dead_code)]
    peer: std::net::SocketAddr,
    cut: Arc<AtomicBool>,
}

impl ConnTag {
    /// From now on every read and write of this connection fails, so the
    /// server closes it without writing (any more of) an answer.
    pub(crate) fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
    }
}

/// A TCP listener whose connections a handler can cut ([`ConnTag::cut`]).
pub(crate) struct CuttableListener(tokio::net::TcpListener);

/// A TCP stream that fails every read and write once cut.
pub(crate) struct CuttableIo {
    inner: tokio::net::TcpStream,
    cut: Arc<AtomicBool>,
}

fn cut_error() -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::ConnectionReset,
        "answer lost (sandbox fault)",
    )
}

impl tokio::io::AsyncRead for CuttableIo {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        if self.cut.load(Ordering::SeqCst) {
            return std::task::Poll::Ready(Err(cut_error()));
        }
        std::pin::Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for CuttableIo {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        if self.cut.load(Ordering::SeqCst) {
            return std::task::Poll::Ready(Err(cut_error()));
        }
        std::pin::Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        if self.cut.load(Ordering::SeqCst) {
            return std::task::Poll::Ready(Err(cut_error()));
        }
        std::pin::Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        if self.cut.load(Ordering::SeqCst) {
            return std::task::Poll::Ready(Err(cut_error()));
        }
        std::pin::Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

impl axum::serve::Listener for CuttableListener {
    type Io = CuttableIo;
    type Addr = ConnTag;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            match self.0.accept().await {
                Ok((stream, peer)) => {
                    let cut = Arc::new(AtomicBool::new(false));
                    return (
                        CuttableIo {
                            inner: stream,
                            cut: cut.clone(),
                        },
                        ConnTag { peer, cut },
                    );
                }
                // Out of file descriptors and the like: wait, as axum does.
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(ConnTag {
            peer: self.0.local_addr()?,
            cut: Arc::new(AtomicBool::new(false)),
        })
    }
}

impl axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, CuttableListener>>
    for ConnTag
{
    fn connect_info(stream: axum::serve::IncomingStream<'_, CuttableListener>) -> Self {
        stream.remote_addr().clone()
    }
}

/// Serves `app` on `listener` (spawned on the current runtime), with
/// connections a handler can cut: [`serve_request`] finds the request's
/// [`ConnTag`] ([`conn_tag`]).
pub(crate) fn serve(listener: tokio::net::TcpListener, app: axum::Router) {
    let svc = app.into_make_service_with_connect_info::<ConnTag>();
    tokio::spawn(async move {
        let _ = axum::serve(CuttableListener(listener), svc).await;
    });
}

/// The connection a request came on (see [`serve`]).
fn conn_tag(parts: &http::request::Parts) -> Option<ConnTag> {
    parts
        .extensions
        .get::<axum::extract::ConnectInfo<ConnTag>>()
        .map(|c| c.0.clone())
}

/// The response for a fault, in the server's conventions.
async fn respond(fault: Fault, flavor: Flavor) -> Response {
    match fault {
        // `take` never hands out `Pass` (nor `AnswerLost`, which is applied
        // by `finish`); a direct call gets a plain 500.
        Fault::Pass | Fault::AnswerLost(_) => {
            error_response(500, flavor, reason(500), Vec::new(), None)
        }
        Fault::Timeout(d) => {
            tokio::time::sleep(d).await;
            error_response(504, flavor, "Gateway Timeout", Vec::new(), None)
        }
        Fault::Unauthorized => unauthorized(flavor),
        Fault::Status {
            status,
            retry_after,
            mut headers,
            body,
        } => {
            if let Some(ra) = retry_after {
                headers.push(("Retry-After".into(), ra));
            }
            if status == 429 && flavor == Flavor::Jira {
                let has = |h: &[(String, String)], n: &str| {
                    h.iter().any(|(k, _)| k.eq_ignore_ascii_case(n))
                };
                if !has(&headers, "RateLimit-Reason") {
                    headers.push(("RateLimit-Reason".into(), "jira-burst-based".into()));
                }
                if !has(&headers, "X-RateLimit-Reset") {
                    headers.push(("X-RateLimit-Reset".into(), iso_in(60)));
                }
            }
            error_response(status, flavor, reason(status), headers, body)
        }
    }
}

fn reason(status: u16) -> &'static str {
    StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("Error")
}

/// An error answer in the server's shape (or `body` verbatim).
pub(crate) fn error_response(
    status: u16,
    flavor: Flavor,
    message: &str,
    headers: Vec<(String, String)>,
    body: Option<String>,
) -> Response {
    let body = body.unwrap_or_else(|| match flavor {
        Flavor::Jira => serde_json::json!({"errorMessages": [message], "errors": {}}).to_string(),
        Flavor::ServiceNow => serde_json::json!({
            "error": {"message": message, "detail": null},
            "status": "failure"
        })
        .to_string(),
    });
    let mut resp = Response::new(Body::from(body));
    *resp.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let h = resp.headers_mut();
    h.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json;charset=UTF-8"),
    );
    for (k, v) in headers {
        if let (Ok(k), Ok(v)) = (
            http::HeaderName::from_bytes(k.as_bytes()),
            HeaderValue::from_str(&v),
        ) {
            h.append(k, v);
        }
    }
    resp
}

/// 401 in the server's shape.
pub(crate) fn unauthorized(flavor: Flavor) -> Response {
    match flavor {
        Flavor::Jira => error_response(
            401,
            flavor,
            "Client must be authenticated to access this resource.",
            Vec::new(),
            None,
        ),
        Flavor::ServiceNow => error_response(
            401,
            flavor,
            "",
            Vec::new(),
            Some(
                serde_json::json!({
                    "error": {
                        "message": "User Not Authenticated",
                        "detail": "Required to provide Auth information"
                    },
                    "status": "failure"
                })
                .to_string(),
            ),
        ),
    }
}

/// A JSON response.
pub(crate) fn json_response(status: u16, value: &serde_json::Value) -> Response {
    let mut resp = Response::new(Body::from(value.to_string()));
    *resp.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json;charset=UTF-8"),
    );
    resp
}

/// An empty response with this status.
pub(crate) fn empty_response(status: u16) -> Response {
    let mut resp = Response::new(Body::empty());
    *resp.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::NO_CONTENT);
    resp
}

/// One request as a server saw it. `Authorization` (and cookie) values are
/// never kept: they read `<redacted>`.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    pub query: Vec<(String, String)>,
    pub headers: Vec<(String, String)>,
    pub body_len: usize,
    /// The body parsed as JSON, when it is JSON.
    pub json: Option<serde_json::Value>,
}

impl Recorded {
    pub(crate) fn new(parts: &http::request::Parts, body: &[u8]) -> Self {
        let headers = parts
            .headers
            .iter()
            .map(|(k, v)| {
                let name = k.as_str().to_string();
                let value = if matches!(
                    name.as_str(),
                    "authorization" | "cookie" | "proxy-authorization"
                ) {
                    "<redacted>".to_string()
                } else {
                    String::from_utf8_lossy(v.as_bytes()).into_owned()
                };
                (name, value)
            })
            .collect();
        Recorded {
            method: parts.method.to_string(),
            path: parts.uri.path().to_string(),
            query: parse_query(parts.uri.query()),
            headers,
            body_len: body.len(),
            json: serde_json::from_slice(body).ok(),
        }
    }

    /// The first value of a header (name case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The first value of a query parameter.
    pub fn query_param(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Decoded `a=b&c=d` pairs, in order.
pub(crate) fn parse_query(q: Option<&str>) -> Vec<(String, String)> {
    q.map(|q| {
        form_urlencoded::parse(q.as_bytes())
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect()
    })
    .unwrap_or_default()
}

/// Percent-decodes one path segment.
pub(crate) fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            let hex = std::str::from_utf8(&b[i + 1..i + 3]).ok();
            if let Some(x) = hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                out.push(x);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Percent-encodes a path segment (unreserved characters kept).
pub(crate) fn percent_encode(s: &str) -> String {
    let mut out = String::new();
    for &c in s.as_bytes() {
        if c.is_ascii_alphanumeric() || b"-._~".contains(&c) {
            out.push(c as char);
        } else {
            out.push_str(&format!("%{c:02X}"));
        }
    }
    out
}

/// Parts of an `Authorization` header.
pub(crate) enum Credentials {
    Basic(String, String),
    Bearer(String),
}

pub(crate) fn credentials(headers: &http::HeaderMap) -> Option<Credentials> {
    use base64::Engine as _;
    let v = headers.get(http::header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, rest) = v.trim().split_once(' ')?;
    if scheme.eq_ignore_ascii_case("basic") {
        let raw = base64::engine::general_purpose::STANDARD
            .decode(rest.trim())
            .ok()?;
        let s = String::from_utf8(raw).ok()?;
        let (u, p) = s.split_once(':')?;
        Some(Credentials::Basic(u.to_string(), p.to_string()))
    } else if scheme.eq_ignore_ascii_case("bearer") {
        Some(Credentials::Bearer(rest.trim().to_string()))
    } else {
        None
    }
}

/// Seconds since the Unix epoch.
pub(crate) fn now_secs() -> (i64, u32) {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    (d.as_secs() as i64, d.subsec_millis())
}

/// (year, month, day, hour, minute, second) in UTC.
pub(crate) fn civil(secs: i64) -> (i64, u32, u32, u32, u32, u32) {
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = if m <= 2 { y + 1 } else { y };
    (
        y,
        m,
        d,
        (sod / 3600) as u32,
        ((sod % 3600) / 60) as u32,
        (sod % 60) as u32,
    )
}

/// `YYYY-MM-DD HH:MM:SS` (UTC), as ServiceNow writes times.
pub(crate) fn snow_time() -> String {
    let (y, mo, d, h, mi, s) = civil(now_secs().0);
    format!("{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02}")
}

/// `YYYY-MM-DDTHH:MM:SS.mmm+0000`, as Jira writes times.
pub(crate) fn jira_time() -> String {
    let (secs, ms) = now_secs();
    let (y, mo, d, h, mi, s) = civil(secs);
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{ms:03}+0000")
}

/// [`jira_time`] `secs` from now (negative: in the past).
pub(crate) fn jira_time_in(secs: i64) -> String {
    let (y, mo, d, h, mi, s) = civil(now_secs().0 + secs);
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}.000+0000")
}

/// ISO 8601 UTC time `secs` from now (`X-RateLimit-Reset`).
pub(crate) fn iso_in(secs: i64) -> String {
    let (y, mo, d, h, mi, s) = civil(now_secs().0 + secs);
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}Z")
}

/// A tiny deterministic PRNG (xorshift64*).
#[derive(Debug, Clone)]
pub(crate) struct XorShift(u64);

impl XorShift {
    pub(crate) fn new(seed: u64) -> Self {
        // Never zero; spread small seeds.
        XorShift(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    pub(crate) fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// Uniform in `[0, 1)`.
    pub(crate) fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scripted_faults_are_consumed_in_order() {
        let f = Faults::default();
        f.push(
            Match::method_path(Method::POST, "/issue"),
            Fault::status(503),
            2,
        );
        assert!(f.take(&Method::GET, "/rest/api/3/issue/X-1").is_none());
        assert!(f.take(&Method::POST, "/rest/api/3/issue").is_some());
        assert!(f.take(&Method::POST, "/rest/api/3/issue").is_some());
        assert!(f.take(&Method::POST, "/rest/api/3/issue").is_none());
        assert_eq!(
            f.injected(),
            vec![
                ("POST /rest/api/3/issue".to_string(), "503".to_string()),
                ("POST /rest/api/3/issue".to_string(), "503".to_string())
            ]
        );
    }

    #[test]
    fn rates_are_deterministic() {
        let run = |seed| {
            let f = Faults::default();
            f.set_rates(
                Rates {
                    server_error: 0.2,
                    rate_limited: 0.2,
                    timeout: 0.1,
                    timeout_ms: 10,
                    ..Rates::default()
                },
                seed,
            );
            (0..200)
                .map(|_| f.take(&Method::GET, "/x").map(|x| x.kind()))
                .collect::<Vec<_>>()
        };
        let a = run(7);
        assert_eq!(a, run(7));
        let faulted = a.iter().filter(|x| x.is_some()).count();
        assert!((60..140).contains(&faulted), "{faulted}");
    }

    #[test]
    fn civil_dates() {
        assert_eq!(civil(0), (1970, 1, 1, 0, 0, 0));
        assert_eq!(civil(1_709_210_096), (2024, 2, 29, 12, 34, 56));
    }

    #[test]
    fn percent_round_trip() {
        assert_eq!(percent_decode(&percent_encode("a b/ü.txt")), "a b/ü.txt");
    }
}
