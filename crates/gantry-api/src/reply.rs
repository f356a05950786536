//! The body of a front-door answer, as the listener sends it.
//!
//! Most answers are bytes an operation has just written (ECS's JSON). Sent as [`Reply::Written`],
//! the `Vec` goes to hyper as it is: no boxed body, and no shared buffer (`Bytes::from(Vec)`
//! allocates one whenever the `Vec` has spare capacity). Every other answer (the protocol
//! crate's encodings, errors, Gantry's own routes) is an axum [`Body`], as before.

use axum::body::Body;
use bytes::{Buf, Bytes};
use hyper::body::{Frame, SizeHint};
use std::pin::Pin;
use std::task::{Context, Poll};

/// A front-door answer.
pub type Answer = axum::http::Response<Reply>;

#[derive(Debug)]
pub enum Reply {
    /// Bytes written for this answer; `None` once sent.
    Written(Option<Vec<u8>>),
    /// Any other body.
    Boxed(Body),
}

impl From<Body> for Reply {
    fn from(b: Body) -> Self {
        Reply::Boxed(b)
    }
}

impl Reply {
    /// The same body as an axum [`Body`] (for the router, whose handlers answer those).
    pub fn into_body(self) -> Body {
        match self {
            Reply::Written(Some(v)) => Body::from(v),
            Reply::Written(None) => Body::empty(),
            Reply::Boxed(b) => b,
        }
    }
}

/// A chunk of a [`Reply`]: the written bytes (read from `at` on), or a boxed body's chunk.
#[derive(Debug)]
pub enum Chunk {
    Written { bytes: Vec<u8>, at: usize },
    Shared(Bytes),
}

impl Buf for Chunk {
    fn remaining(&self) -> usize {
        match self {
            Chunk::Written { bytes, at } => bytes.len() - at,
            Chunk::Shared(b) => b.remaining(),
        }
    }

    fn chunk(&self) -> &[u8] {
        match self {
            Chunk::Written { bytes, at } => &bytes[*at..],
            Chunk::Shared(b) => b.chunk(),
        }
    }

    fn advance(&mut self, n: usize) {
        match self {
            Chunk::Written { bytes, at } => *at = (*at + n).min(bytes.len()),
            Chunk::Shared(b) => b.advance(n),
        }
    }
}

impl hyper::body::Body for Reply {
    type Data = Chunk;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Chunk>, axum::Error>>> {
        match self.get_mut() {
            Reply::Written(bytes) => {
                Poll::Ready(bytes.take().map(|bytes| Ok(Frame::data(Chunk::Written { bytes, at: 0 }))))
            }
            Reply::Boxed(b) => {
                Pin::new(b).poll_frame(cx).map(|f| f.map(|f| f.map(|f| f.map_data(Chunk::Shared))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Reply::Written(bytes) => bytes.is_none(),
            Reply::Boxed(b) => b.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Reply::Written(bytes) => SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64)),
            Reply::Boxed(b) => b.size_hint(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;
    use hyper::body::Body as _;

    /// Written bytes are sent whole, with their exact length, then the body ends; a boxed body
    /// is its own bytes; either reads back as an axum body.
    #[tokio::test]
    async fn a_reply_is_its_bytes() {
        let r = Reply::Written(Some(b"{\"clusters\":[]}".to_vec()));
        assert_eq!(r.size_hint().exact(), Some(15));
        assert!(!r.is_end_stream());
        let got = r.collect().await.unwrap().to_bytes();
        assert_eq!(&got[..], b"{\"clusters\":[]}");
        let boxed = Reply::from(Body::from("plain"));
        assert_eq!(&boxed.collect().await.unwrap().to_bytes()[..], b"plain");
        let back = Reply::Written(Some(b"abc".to_vec())).into_body();
        assert_eq!(&back.collect().await.unwrap().to_bytes()[..], b"abc");
        let mut chunk = Chunk::Written { bytes: b"abcdef".to_vec(), at: 0 };
        chunk.advance(4);
        assert_eq!((chunk.remaining(), chunk.chunk()), (2, &b"ef"[..]));
    }
}
