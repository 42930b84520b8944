//! The body read deadline: a request body that has not fully arrived this
//! long after its head ends in an error the intake answers with 408.

use super::Refusals;
use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use shared::intake::router::BodyTimedOut;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

pin_project_lite::pin_project! {
    /// `inner`, ending in [`BodyTimedOut`] once `deadline` has passed.
    pub struct Deadline<B> {
        #[pin]
        inner: B,
        #[pin]
        sleep: tokio::time::Sleep,
        refusals: Refusals,
        done: bool,
    }
}

impl<B> Deadline<B> {
    pub fn new(inner: B, within: Duration, refusals: Refusals) -> Self {
        Self {
            inner,
            sleep: tokio::time::sleep(within),
            refusals,
            done: false,
        }
    }
}

impl<B> Body for Deadline<B>
where
    B: Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.project();
        if *this.done {
            return Poll::Ready(None);
        }
        if let Poll::Ready(frame) = this.inner.poll_frame(cx) {
            return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
        }
        if this.sleep.poll(cx).is_ready() {
            *this.done = true;
            // The intake counts the `Rejected` metric when it answers 408.
            this.refusals
                .note("body_timeout", "the request body did not arrive in time");
            return Poll::Ready(Some(Err(Box::new(BodyTimedOut))));
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.done || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
