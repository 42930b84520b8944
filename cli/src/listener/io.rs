//! A connection's bytes, watched: when it last moved a byte, and whether it
//! has sent anything since the last answer (a half-sent request) — the idle
//! timeout and the refusal counts read these. A connection that never sent a
//! byte of a request is not half-sent: HTTP clients open spare connections
//! for their pools (reqwest does when a request races an idle connection)
//! and close them, or let the server close them, unused.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

fn now_ms() -> u64 {
    epoch().elapsed().as_millis() as u64
}

/// What the connection's task reads about its bytes.
#[derive(Clone, Debug)]
pub struct Activity(Arc<State>);

#[derive(Debug)]
struct State {
    last_ms: AtomicU64,
    read_since_write: AtomicBool,
}

impl Activity {
    /// Completes once no byte has moved for `idle`.
    pub async fn idle_for(&self, idle: Duration) {
        loop {
            let since = Duration::from_millis(
                now_ms().saturating_sub(self.0.last_ms.load(Ordering::Relaxed)),
            );
            if since >= idle {
                return;
            }
            tokio::time::sleep(idle - since).await;
        }
    }

    /// Whether the client is in the middle of a request: it has sent bytes
    /// since the last answer (since the connection opened, or since its TLS
    /// handshake, when it has had none).
    pub fn mid_request(&self) -> bool {
        self.0.read_since_write.load(Ordering::Relaxed)
    }

    /// The TLS handshake is done: the bytes it read were not a request.
    /// (A client whose first request bytes came in the handshake's last read
    /// and then stalls is still closed at the header timeout, uncounted.)
    pub fn handshake_done(&self) {
        self.0.read_since_write.store(false, Ordering::Relaxed);
    }
}

/// A stream whose reads and writes are recorded in an [`Activity`].
pub struct Watched<S> {
    inner: S,
    activity: Activity,
}

impl<S> Watched<S> {
    pub fn new(inner: S) -> (Self, Activity) {
        let activity = Activity(Arc::new(State {
            last_ms: AtomicU64::new(now_ms()),
            read_since_write: AtomicBool::new(false),
        }));
        (
            Self {
                inner,
                activity: activity.clone(),
            },
            activity,
        )
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            let s = &self.activity.0;
            s.last_ms.store(now_ms(), Ordering::Relaxed);
            s.read_since_write.store(true, Ordering::Relaxed);
        }
        r
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = r {
            if n > 0 {
                self.wrote();
            }
        }
        r
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if let Poll::Ready(Ok(n)) = r {
            if n > 0 {
                self.wrote();
            }
        }
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

impl<S> Watched<S> {
    fn wrote(&self) {
        let s = &self.activity.0;
        s.last_ms.store(now_ms(), Ordering::Relaxed);
        s.read_since_write.store(false, Ordering::Relaxed);
    }
}
