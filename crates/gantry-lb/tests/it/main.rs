//! The data plane over real sockets on 127.0.0.1, with tiny in-process backends.

mod fast;
mod http;
mod lifecycle;
mod support;
mod tcp_tls;
