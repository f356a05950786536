//! The body of a response the load balancer sends: its own (an error page, a fixed response, a
//! redirect) or a target's, streamed through while the request counts as in flight.

use crate::group::{InFlight, Member};
use crate::pool::Sender;
use bytes::Bytes;
use http_body::{Frame, SizeHint};
use hyper::body::Incoming;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

#[derive(Debug)]
pub enum Body {
    Full(Option<Bytes>),
    /// A target's body; the guard is dropped when it ends (or the client goes away), and the
    /// connection it came on goes back to its target once it has been read in full.
    Proxied {
        inner: Incoming,
        guard: Option<InFlight>,
        connection: Option<(Sender, Arc<Member>)>,
    },
}

impl Drop for Body {
    fn drop(&mut self) {
        // A body nobody polled to its end (an empty one, say) may still have been read in full.
        if let Body::Proxied { inner, connection, .. } = self
            && http_body::Body::is_end_stream(inner)
            && let Some((sender, member)) = connection.take()
        {
            member.put_idle(sender);
        }
    }
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
            Body::Proxied { inner, guard, connection } => {
                let frame = ready!(Pin::new(inner).poll_frame(cx));
                match &frame {
                    Some(Ok(_)) => {}
                    None => {
                        if let Some((sender, member)) = connection.take() {
                            member.put_idle(sender);
                        }
                        guard.take();
                    }
                    Some(Err(_)) => {
                        connection.take();
                        guard.take();
                    }
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
