//! Nanoseconds per verification of a typical ECS request (1 KiB JSON body, botocore's headers),
//! with a cached signing key and with the key derived each time.
//!
//!     cargo run --release -p gantry-sigv4 --example bench

use std::hint::black_box;
use std::time::Instant;

use gantry_sigv4::{Credentials, Request, SigningKey, parse, sign, verify, verify_with_key};

fn main() {
    let body =
        format!(r#"{{"cluster":"default","taskDefinition":"web:3","overrides":"{}"}}"#, "x".repeat(1000));
    assert!(body.len() >= 1024);
    let base: Vec<(&str, &[u8])> = vec![
        ("host", b"ecs.us-east-1.amazonaws.com"),
        ("content-type", b"application/x-amz-json-1.1"),
        ("x-amz-target", b"AmazonEC2ContainerServiceV20141113.RunTask"),
        ("user-agent", b"aws-cli/2.15.0 Python/3.11.6 Linux/6.1 exe/x86_64 command/ecs.run-task"),
        ("content-length", b"1042"),
        ("accept-encoding", b"identity"),
    ];
    let now = 1_704_067_200;
    let creds = Credentials {
        access_key: "AKIDEXAMPLE",
        secret: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
        session_token: None,
    };
    let req = Request { method: "POST", path: "/", query: "", headers: &base, body: body.as_bytes() };
    let added = sign(&req, &creds, "us-east-1", "ecs", now);
    let mut headers = base.clone();
    headers.extend(added.iter().map(|(n, v)| (*n, v.as_bytes())));
    let req = Request { headers: &headers, ..req };
    let auth = parse(&req).unwrap();
    let key = SigningKey::derive(creds.secret, &auth.date, &auth.region, &auth.service);
    verify_with_key(&auth, &req, &key, now).unwrap();

    let n = 200_000;
    for (name, f) in [
        (
            "parse + verify, cached key",
            &(|| {
                let auth = parse(black_box(&req)).unwrap();
                verify_with_key(&auth, &req, &key, now).unwrap();
            }) as &dyn Fn(),
        ),
        ("parse + verify, key derived", &|| {
            let auth = parse(black_box(&req)).unwrap();
            verify(&auth, &req, creds.secret, now).unwrap();
        }),
        ("verify only, cached key", &|| verify_with_key(&auth, black_box(&req), &key, now).unwrap()),
        ("sha-256 of the body alone", &|| {
            black_box(<sha2::Sha256 as sha2::Digest>::digest(black_box(body.as_bytes())));
        }),
    ] {
        for _ in 0..n / 10 {
            f();
        }
        let t = Instant::now();
        for _ in 0..n {
            f();
        }
        println!("{name:32} {:7.0} ns", t.elapsed().as_nanos() as f64 / f64::from(n));
    }
}
