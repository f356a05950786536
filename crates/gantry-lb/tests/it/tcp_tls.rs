//! NLB listeners (TCP and TLS) and ALB's HTTPS: TCP forwarding, TLS termination, SNI, ALPN.

use crate::support::*;
use gantry_lb::config::{Certificate, Listener, Protocol, Target, TargetGroup};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::rustls;

fn tcp_group(name: &str, targets: &[std::net::SocketAddr]) -> TargetGroup {
    let mut tg = TargetGroup::new(&tg_arn(name), Protocol::Tcp);
    tg.health_check.interval = Duration::from_millis(50);
    tg.health_check.healthy_threshold = 2;
    tg.targets = targets.iter().map(|a| Target::ip(*a)).collect();
    tg
}

fn nlb_listener(n: u16, port: u16, protocol: Protocol, group: &str) -> Listener {
    let mut l = Listener::new(&listener_arn(n), NLB, port, protocol);
    l.default_actions = vec![forward(group)];
    l
}

async fn echo_through<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(
    s: &mut S,
    message: &[u8],
) -> Vec<u8> {
    s.write_all(message).await.unwrap();
    let mut got = vec![0u8; message.len()];
    s.read_exact(&mut got).await.unwrap();
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_listener_forwards_bytes() {
    let (e1, _t1) = echo().await;
    let (e2, _t2) = echo().await;
    let (lb, sink) = load_balancer();
    let port = free_port();
    lb.apply(&config(vec![nlb_listener(1, port, Protocol::Tcp, "echo")], vec![tcp_group("echo", &[e1, e2])]))
        .unwrap();
    eventually(5, "healthy", async || {
        lb.target_health(&tg_arn("echo")).unwrap().iter().all(|t| t.state == gantry_lb::State::Healthy)
    })
    .await;
    for i in 0..4 {
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        let msg = format!("hello {i} over an NLB");
        assert_eq!(echo_through(&mut s, msg.as_bytes()).await, msg.as_bytes());
    }
    lb.flush_metrics();
    let data = sink.0.lock().unwrap().clone();
    let new_flows: f64 = data
        .iter()
        .filter(|d| d.metric_name == "NewFlowCount" && d.dimensions.len() == 1)
        .map(|d| match d.value {
            gantry_ports::MetricValue::Value(v) => v,
            _ => 0.0,
        })
        .sum();
    assert_eq!(new_flows, 4.0);
    assert!(data.iter().all(|d| d.namespace == "AWS/NetworkELB"));
}

struct TestCert {
    cert: Certificate,
    der: rustls::pki_types::CertificateDer<'static>,
}

fn cert(arn: &str, names: &[&str]) -> TestCert {
    let key = rcgen::KeyPair::generate().unwrap();
    let params =
        rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).unwrap();
    let c = params.self_signed(&key).unwrap();
    TestCert {
        cert: Certificate { arn: arn.into(), chain_pem: c.pem(), private_key_pem: key.serialize_pem() },
        der: c.der().clone(),
    }
}

fn tls_client(roots: &[&TestCert], alpn: &[&[u8]]) -> tokio_rustls::TlsConnector {
    let mut store = rustls::RootCertStore::empty();
    for r in roots {
        store.add(r.der.clone()).unwrap();
    }
    let mut config =
        rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(store)
            .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_terminates_tls_picks_the_certificate_by_sni_and_offers_h2() {
    let a = backend("a").await;
    let (lb, _) = load_balancer();
    let port = free_port();
    let default = cert("arn:cert/default", &["localhost"]);
    let other = cert("arn:cert/other", &["*.other.test"]);
    let mut l = Listener::new(&listener_arn(1), LB, port, Protocol::Https);
    l.certificates = vec![default.cert.clone(), other.cert.clone()];
    l.default_actions = vec![forward("a")];
    lb.apply(&config(vec![l], vec![group("a", &[&a])])).unwrap();
    all_healthy(&lb, "a").await;

    // SNI names the second certificate's domain: only it verifies against that name.
    for (name, trusted) in [("www.other.test", &other), ("localhost", &default)] {
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        let server = rustls::pki_types::ServerName::try_from(name.to_string()).unwrap();
        let mut tls = tls_client(&[trusted], &[b"http/1.1"]).connect(server, tcp).await.unwrap();
        let req = format!("GET /x HTTP/1.1\r\nHost: {name}\r\nConnection: close\r\n\r\n");
        tls.write_all(req.as_bytes()).await.unwrap();
        let mut resp = Vec::new();
        tls.read_to_end(&mut resp).await.unwrap();
        let resp = String::from_utf8_lossy(&resp).to_lowercase();
        assert!(resp.starts_with("http/1.1 200"), "{resp}");
        assert!(resp.contains("x-seen-proto: https"), "{resp}");
        assert!(resp.contains(&format!("x-seen-port: {port}")), "{resp}");
    }
    // An unknown name gets the default certificate.
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let server = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let tls = tls_client(&[&default], &[b"h2", b"http/1.1"]).connect(server, tcp).await.unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    // HTTP/2 over that connection.
    let (mut send, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(tls),
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    let req = http::Request::get("https://localhost/h2")
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .unwrap();
    let resp = send.send_request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-backend"], "a");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_listener_terminates_and_forwards_bytes() {
    let (e1, _t) = echo().await;
    let (lb, _) = load_balancer();
    let port = free_port();
    let c = cert("arn:cert/nlb", &["nlb.test"]);
    let mut l = nlb_listener(1, port, Protocol::Tls, "echo");
    l.certificates = vec![c.cert.clone()];
    lb.apply(&config(vec![l], vec![tcp_group("echo", &[e1])])).unwrap();
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let server = rustls::pki_types::ServerName::try_from("nlb.test").unwrap();
    let mut tls = tls_client(&[&c], &[]).connect(server, tcp).await.unwrap();
    assert_eq!(echo_through(&mut tls, b"decrypted at the NLB").await, b"decrypted at the NLB");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_configurations_change_nothing() {
    let a = backend("a").await;
    let (lb, _) = load_balancer();
    let port = free_port();
    lb.apply(&config(vec![http_listener(1, port, forward("a"))], vec![group("a", &[&a])])).unwrap();
    // A port someone else holds.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let busy = taken.local_addr().unwrap().port();
    let err = lb
        .apply(&config(vec![http_listener(2, busy, forward("a"))], vec![group("a", &[&a])]))
        .unwrap_err()
        .to_string();
    assert!(err.contains(&format!("127.0.0.1:{busy}")), "{err}");
    // A certificate that is not PEM.
    let mut l = Listener::new(&listener_arn(3), LB, free_port(), Protocol::Https);
    l.certificates = vec![Certificate {
        arn: "arn:cert/bad".into(),
        chain_pem: "nonsense".into(),
        private_key_pem: "x".into(),
    }];
    l.default_actions = vec![forward("a")];
    let err = lb.apply(&config(vec![l], vec![group("a", &[&a])])).unwrap_err().to_string();
    assert!(err.contains("arn:cert/bad"), "{err}");
    // An unknown target group.
    let err =
        lb.apply(&config(vec![http_listener(1, port, forward("nope"))], vec![])).unwrap_err().to_string();
    assert!(err.contains("targetgroup/nope/"), "{err}");
    // The first configuration still serves.
    assert_eq!(lb.local_addr(&listener_arn(1)).unwrap().port(), port);
    all_healthy(&lb, "a").await;
    assert_eq!(get(&client(), port, "/", &[]).await.2, "a");
    // Removing the listener closes its port.
    lb.apply(&config(vec![], vec![])).unwrap();
    eventually(2, "port closed", async || tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_err())
        .await;
}
