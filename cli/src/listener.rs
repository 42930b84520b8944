//! The public listener of `relay serve`: the one part strangers reach.
//!
//! Each accepted connection is served by hyper's HTTP/1.1 server with a
//! **header read timeout** (a client that does not finish its request head
//! in time is disconnected, so half-sent requests cannot pile up), and at
//! most **`max_connections`** are served at once: a connection over the cap
//! is closed as soon as it is accepted, before any byte is read (the cheap
//! refusal), and counted. On shutdown the listener stops accepting, open
//! connections finish the request they are in and close.

use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

/// The listener's limits (`relay serve --header-timeout-secs`,
/// `--max-connections`).
#[derive(Clone, Debug)]
pub struct Limits {
    /// How long a client may take to send a request's head (request line and
    /// headers), on a new connection and between keep-alive requests.
    pub header_timeout: Duration,
    /// Connections served at once; more are closed on accept.
    pub max_connections: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            header_timeout: Duration::from_secs(10),
            max_connections: 4096,
        }
    }
}

/// Connections refused at the cap, since start.
#[derive(Clone, Default, Debug)]
pub struct Refused(Arc<AtomicU64>);

impl Refused {
    pub fn count(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Serves `router` on `listener` until `shutdown` completes; then waits at
/// most `drain` for the open connections.
pub async fn serve(
    listener: TcpListener,
    router: axum::Router,
    limits: Limits,
    refused: Refused,
    shutdown: impl Future<Output = ()>,
    drain: Duration,
) {
    let permits = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            r = listener.accept() => match r {
                Ok((s, _)) => s,
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
            if refused
                .0
                .fetch_add(1, Ordering::Relaxed)
                .is_multiple_of(1000)
            {
                tracing::warn!(
                    max_connections = limits.max_connections,
                    refused = refused.count(),
                    "connection refused: the listener serves its maximum"
                );
            }
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let mut http = hyper::server::conn::http1::Builder::new();
        http.timer(TokioTimer::new())
            .header_read_timeout(limits.header_timeout)
            .keep_alive(true);
        let conn = http.serve_connection(
            TokioIo::new(stream),
            TowerToHyperService::new(router.clone()),
        );
        let watched = graceful.watch(conn);
        tokio::spawn(async move {
            let _ = watched.await;
            drop(permit);
        });
    }
    drop(listener);
    if tokio::time::timeout(drain, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("connections still open after the drain time; closing");
    }
}
