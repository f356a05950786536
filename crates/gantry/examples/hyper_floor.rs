//! The floor under Gantry's front door: `hyper_floor PORT FILE` answers every request on
//! 127.0.0.1:PORT with FILE's bytes, as Gantry's listener would if the front door did nothing.
//! The same stack and settings as `gantry_api::server` (its `serve_connection`: hyper's HTTP/1.1
//! connection with upgrades and the header read timeout; and TCP_NODELAY, Tokio's multi-thread runtime, which
//! `TOKIO_WORKER_THREADS` sizes, mimalloc), the same response headers (the content type of
//! JSON 1.1 and a request ID), and the request body read to its end. `bench/api.py
//! --versus-nginx --floor` runs it beside nginx and Gantry: what Gantry costs above this row is
//! its own work (routing, signature, operation, JSON, metrics); what this row costs above nginx
//! is the HTTP stack's.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::{CONTENT_TYPE, HeaderName, HeaderValue};

#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

const REQUEST_ID: HeaderName = HeaderName::from_static("x-amzn-requestid");

fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let (Some(port), Some(file)) = (args.next(), args.next()) else {
        eprintln!("usage: hyper_floor PORT FILE");
        std::process::exit(2);
    };
    let port: u16 = port.parse().map_err(|e| std::io::Error::other(format!("port {port}: {e}")))?;
    let body = Bytes::from(std::fs::read(&file)?);
    tokio::runtime::Builder::new_multi_thread().enable_all().build()?.block_on(serve(port, body))
}

async fn serve(port: u16, body: Bytes) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        let body = body.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                let body = body.clone();
                async move {
                    req.into_body().collect().await?;
                    let mut r = hyper::Response::new(Full::new(body));
                    let h = r.headers_mut();
                    h.insert(CONTENT_TYPE, HeaderValue::from_static("application/x-amz-json-1.1"));
                    h.insert(REQUEST_ID, HeaderValue::from_static("00000000-0000-4000-8000-000000000000"));
                    Ok::<_, hyper::Error>(r)
                }
            });
            let limits = gantry_api::server::Limits::default();
            let _ =
                gantry_api::server::serve_connection(stream, service, &limits, std::future::pending()).await;
        });
    }
}
