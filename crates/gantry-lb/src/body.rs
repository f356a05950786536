//! The body of a response the load balancer sends: its own (an error page, a fixed response, a
//! redirect) or a target's, streamed through while the request counts as in flight.

use crate::group::InFlight;
use bytes::Bytes;
use http_body::{Frame, SizeHint};
use hyper::body::Incoming;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

#[derive(Debug)]
pub enum Body {
    Full(Option<Bytes>),
    /// A target's body; the guard is dropped when it ends (or the client goes away).
    Proxied {
        inner: Incoming,
        guard: Option<InFlight>,
    },
}

impl Body {
    pub fn full(b: impl Into<Bytes>) -> Self {
        let b = b.into();
        Body::Full(if b.is_empty() { None } else { Some(b) })
    }

    pub fn empty() -> Self {
        Body::Full(None)
    }
}

impl http_body::Body for Body {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match self.get_mut() {
            Body::Full(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            Body::Proxied { inner, guard } => {
                let frame = ready!(Pin::new(inner).poll_frame(cx));
                if !matches!(frame, Some(Ok(_))) {
                    guard.take();
                }
                Poll::Ready(frame)
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Body::Full(b) => b.is_none(),
            Body::Proxied { inner, .. } => inner.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Body::Full(b) => SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64)),
            Body::Proxied { inner, .. } => inner.size_hint(),
        }
    }
}
