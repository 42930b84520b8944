//! The public listener of `relay serve`: the one part strangers reach.
//!
//! Each accepted connection passes, in order:
//!
//! 1. the **connection cap** — over `max_connections`, the connection is
//!    closed as soon as it is accepted, before any byte is read;
//! 2. with TLS configured, the **handshake** (rustls, TLS 1.2/1.3, ALPN `h2`
//!    and `http/1.1`) within the header timeout — a client speaking plain
//!    HTTP to the TLS port gets a 400 saying so, or a 308 to `https://`
//!    (`--redirect-http`);
//! 3. hyper's HTTP/1.1 server with a **header read timeout** (a new
//!    connection, and between keep-alive requests), or its HTTP/2 server;
//!    a connection that moves no byte for the **idle timeout** is closed;
//! 4. per request, the **rate limits** ([`guard`]): per client address
//!    (`X-Forwarded-For` believed only from `--trusted-proxy` addresses) and
//!    per endpoint, answering 429 with `Retry-After`;
//! 5. a **body read deadline**: a body not complete in time ends the request
//!    (the intake answers 408), before the body-size limit that the intake
//!    applies as it reads.
//!
//! Every refusal is counted by reason ([`Refusals`], the console's queue
//! page) and in the `Rejected` metric. On shutdown the listener stops
//! accepting; open connections finish the request they are in and close.

pub mod acme;
mod body;
pub mod guard;
mod io;
pub mod tls;

use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};

/// The listener's timeouts and cap (`relay serve --header-timeout-secs`,
/// `--body-timeout-secs`, `--idle-timeout-secs`, `--max-connections`).
#[derive(Clone, Debug)]
pub struct Limits {
    /// How long a client may take to send a request's head (request line and
    /// headers), on a new connection and between keep-alive requests; with
    /// TLS, also the time the handshake may take.
    pub header_timeout: Duration,
    /// How long a request's body may take to arrive, from the end of its head.
    pub body_timeout: Duration,
    /// A connection that moves no byte either way for this long is closed.
    pub idle_timeout: Duration,
    /// Connections served at once; more are closed on accept.
    pub max_connections: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(60),
            max_connections: 4096,
        }
    }
}

/// Everything the public listener is given.
#[derive(Clone, Default)]
pub struct Settings {
    pub limits: Limits,
    pub guard: guard::GuardSettings,
    /// HTTPS; `None`: plain HTTP.
    pub tls: Option<Arc<tls::Tls>>,
    /// With TLS: answer a plain-HTTP request with a 308 to `https://` instead
    /// of a 400.
    pub redirect_http: bool,
}

/// Refusals at the listener since start, by reason (shown on the console's
/// queue page; each is also counted in the `Rejected` metric).
#[derive(Clone, Default, Debug)]
pub struct Refusals(Arc<Mutex<BTreeMap<&'static str, u64>>>);

impl Refusals {
    /// Counts one refusal; the first of a reason and every 1000th are logged.
    pub fn add(&self, reason: &'static str, detail: &str) {
        shared::support::metrics::count("Rejected", &[("Reason", reason)]);
        self.note(reason, detail);
    }

    /// Counts one on the board only (the intake has counted the metric).
    fn note(&self, reason: &'static str, detail: &str) {
        let n = {
            let mut m = self.0.lock().unwrap_or_else(|e| e.into_inner());
            let n = m.entry(reason).or_default();
            *n += 1;
            *n
        };
        if n % 1000 == 1 {
            tracing::warn!(
                reason,
                refused = n,
                detail,
                "refused at the webhook listener"
            );
        }
    }

    /// (reason, count), by reason.
    pub fn list(&self) -> Vec<(&'static str, u64)> {
        let m = self.0.lock().unwrap_or_else(|e| e.into_inner());
        m.iter().map(|(k, v)| (*k, *v)).collect()
    }
}

/// What every connection task shares.
struct Shared {
    router: axum::Router,
    settings: Settings,
    guard: guard::Guard,
    refusals: Refusals,
}

/// Serves `router` on `listener` until `shutdown` completes; then waits at
/// most `drain` for the open connections.
pub async fn serve(
    listener: TcpListener,
    router: axum::Router,
    settings: Settings,
    refusals: Refusals,
    shutdown: impl Future<Output = ()>,
    drain: Duration,
) {
    let max = settings.limits.max_connections.clamp(1, u32::MAX as usize);
    let permits = Arc::new(Semaphore::new(max));
    let (stop_tx, stop_rx) = watch::channel(false);
    let shared = Arc::new(Shared {
        router,
        guard: guard::Guard::new(&settings.guard),
        settings,
        refusals,
    });
    let pruner = tokio::spawn(guard::prune_every(
        shared.guard.clone(),
        Duration::from_secs(10),
    ));
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(s) => s,
                Err(e) => {
                    // Out of file descriptors and the like: back off a little
                    // instead of spinning.
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            shared
                .refusals
                .add("connection_cap", "the listener serves its maximum");
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let shared = shared.clone();
        let stop = stop_rx.clone();
        tokio::spawn(async move {
            connection(shared, stream, peer, stop).await;
            drop(permit);
        });
    }
    drop(listener);
    pruner.abort();
    let _ = stop_tx.send(true);
    let all = u32::try_from(max).unwrap_or(u32::MAX);
    if tokio::time::timeout(drain, permits.acquire_many(all))
        .await
        .is_err()
    {
        tracing::warn!("connections still open after the drain time; closing");
    }
}

/// One connection, from accept to close.
async fn connection(
    shared: Arc<Shared>,
    stream: TcpStream,
    peer: SocketAddr,
    stop: watch::Receiver<bool>,
) {
    let limits = shared.settings.limits.clone();
    let Some(tls) = shared.settings.tls.clone() else {
        let (io, activity) = io::Watched::new(stream);
        http1(&shared, io, activity, peer, false, stop).await;
        return;
    };
    // TLS starts with a handshake record (0x16); anything else is plain
    // HTTP sent to the HTTPS port.
    let mut first = [0u8; 1];
    let peeked = tokio::time::timeout(limits.header_timeout, stream.peek(&mut first)).await;
    match peeked {
        Ok(Ok(1)) if first[0] == 0x16 => {}
        Ok(Ok(1)) => {
            let (io, activity) = io::Watched::new(stream);
            http1(&shared, io, activity, peer, true, stop).await;
            return;
        }
        Ok(_) => return, // closed before a byte
        Err(_) => {
            // An unused spare connection of a client's pool, not a request.
            tracing::debug!(%peer, "closing a connection that sent no byte");
            return;
        }
    }
    let (io, activity) = io::Watched::new(stream);
    let accepted = tokio::time::timeout(limits.header_timeout, tls.acceptor().accept(io)).await;
    let stream = match accepted {
        Ok(Ok(s)) => {
            activity.handshake_done();
            s
        }
        Ok(Err(e)) => {
            shared
                .refusals
                .add("tls_handshake", &format!("{peer}: {e}"));
            return;
        }
        Err(_) => {
            shared
                .refusals
                .add("tls_handshake", "the handshake did not finish in time");
            return;
        }
    };
    let alpn = stream.get_ref().1.alpn_protocol().map(<[u8]>::to_vec);
    match alpn.as_deref() {
        // An ACME server's TLS-ALPN-01 check: the handshake was the answer.
        Some(tls::ACME_TLS_ALPN) => {}
        Some(b"h2") => http2(&shared, stream, activity, peer, stop).await,
        _ => http1(&shared, stream, activity, peer, false, stop).await,
    }
}

/// Serves HTTP/1.1 on `io`; `plain_on_tls`: the client spoke plain HTTP to
/// the HTTPS port and gets the refusal (or redirect) instead of the router.
async fn http1<I>(
    shared: &Arc<Shared>,
    io: I,
    activity: io::Activity,
    peer: SocketAddr,
    plain_on_tls: bool,
    stop: watch::Receiver<bool>,
) where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(shared.settings.limits.header_timeout)
        .keep_alive(!plain_on_tls);
    let svc = service(shared.clone(), peer, plain_on_tls);
    let conn = http.serve_connection(TokioIo::new(io), svc);
    drive(shared, conn, activity, stop, |c| c.graceful_shutdown()).await;
}

async fn http2<I>(
    shared: &Arc<Shared>,
    io: I,
    activity: io::Activity,
    peer: SocketAddr,
    stop: watch::Receiver<bool>,
) where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let mut http = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
    http.timer(TokioTimer::new())
        .max_concurrent_streams(64)
        .keep_alive_interval(Some(shared.settings.limits.idle_timeout / 2))
        .keep_alive_timeout(shared.settings.limits.header_timeout);
    let svc = service(shared.clone(), peer, false);
    let conn = http.serve_connection(TokioIo::new(io), svc);
    drive(shared, conn, activity, stop, |c| c.graceful_shutdown()).await;
}

/// Runs a connection to its end; closes it gracefully when the relay stops
/// or it has been idle for the idle timeout (then waits at most a header
/// timeout more before dropping it).
async fn drive<C, E>(
    shared: &Arc<Shared>,
    conn: C,
    activity: io::Activity,
    mut stop: watch::Receiver<bool>,
    close: impl FnOnce(std::pin::Pin<&mut C>),
) where
    C: Future<Output = Result<(), E>>,
    E: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let limits = &shared.settings.limits;
    tokio::pin!(conn);
    let ended = tokio::select! {
        r = &mut conn => Some(r),
        _ = stop.wait_for(|s| *s) => None,
        () = activity.idle_for(limits.idle_timeout) => {
            tracing::debug!("closing a connection idle for the idle timeout");
            None
        }
    };
    let result = match ended {
        Some(r) => r,
        None => {
            close(conn.as_mut());
            match tokio::time::timeout(limits.header_timeout, &mut conn).await {
                Ok(r) => r,
                Err(_) => return,
            }
        }
    };
    if let Err(e) = result {
        let e: Box<dyn std::error::Error + Send + Sync> = e.into();
        let timeout = e
            .downcast_ref::<hyper::Error>()
            .is_some_and(hyper::Error::is_timeout);
        // A connection closed while waiting for a request that never came
        // (a kept-alive one, or a pool's spare never used) is not a
        // refusal; a half-sent head is.
        if timeout && activity.mid_request() {
            shared
                .refusals
                .add("header_timeout", "the request head did not arrive in time");
        } else {
            tracing::debug!(error = %e, "connection ended with an error");
        }
    }
}

type Answer = http::Response<axum::body::Body>;

/// The per-request service: the plain-HTTP refusal, the rate limits, the
/// body deadline, then the router.
fn service(
    shared: Arc<Shared>,
    peer: SocketAddr,
    plain_on_tls: bool,
) -> impl hyper::service::Service<
    http::Request<hyper::body::Incoming>,
    Response = Answer,
    Error = std::convert::Infallible,
    Future = std::pin::Pin<
        Box<dyn Future<Output = Result<Answer, std::convert::Infallible>> + Send>,
    >,
> + Clone {
    hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
        let shared = shared.clone();
        Box::pin(async move {
            if plain_on_tls {
                return Ok(plain_http(&shared, &req));
            }
            if let Err(refused) = shared.guard.admit(peer.ip(), &req) {
                shared.refusals.add(refused.reason, &refused.client);
                return Ok(refused.answer());
            }
            let deadline = shared.settings.limits.body_timeout;
            let req = req.map(|b| {
                axum::body::Body::new(body::Deadline::new(b, deadline, shared.refusals.clone()))
            });
            let answer = tower::ServiceExt::oneshot(shared.router.clone(), req).await;
            Ok(answer.unwrap_or_else(|never| match never {}))
        }) as std::pin::Pin<Box<dyn Future<Output = _> + Send>>
    })
}

/// A plain-HTTP request to the HTTPS port: 400 saying so, or (by flag) a 308
/// to the same path over `https://` on the Host it named.
fn plain_http(shared: &Shared, req: &http::Request<hyper::body::Incoming>) -> Answer {
    shared
        .refusals
        .add("plain_http", "plain HTTP sent to the HTTPS listener");
    let host = req
        .headers()
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| {
            !h.is_empty()
                && h.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-.:[]".contains(&b))
        });
    let mut r = http::Response::builder().header(http::header::CONNECTION, "close");
    if let (true, Some(host)) = (shared.settings.redirect_http, host) {
        let path = req
            .uri()
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/");
        r = r
            .status(http::StatusCode::PERMANENT_REDIRECT)
            .header(http::header::LOCATION, format!("https://{host}{path}"));
        return r
            .body(axum::body::Body::empty())
            .unwrap_or_else(|_| http::Response::new(axum::body::Body::empty()));
    }
    r.status(http::StatusCode::BAD_REQUEST)
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(axum::body::Body::from(
            r#"{"status":"rejected","reason":"this port speaks HTTPS: use an https:// URL"}"#,
        ))
        .unwrap_or_else(|_| http::Response::new(axum::body::Body::empty()))
}
