//! botocore's restJson1 protocol test cases (`tests/unit/protocols/input/rest-json.json`), run in
//! the server's direction: each case's serialized request (method, URI with its query string,
//! headers, body) must be routed to the case's operation and read back as the case's params.
//! Fetched by `scripts/protocol-tests.sh` as `conformance.rs`'s are; a case that fails is listed,
//! and the suite must pass at least its recorded floor (raise it when more pass, never lower it):
//! 87 of 113 today; the rest are header lists split at commas, query maps of lists, prefix
//! headers and a few client-side cases (idempotency autofill, compression), none of which
//! Scheduler uses.

use crate::conformance::{normalize, same};
use gantry_protocol::Model;
use gantry_protocol::rest::{RestRequest, operation, parse_request};
use serde_json::{Value, json};
use std::path::PathBuf;

const FLOOR: usize = 87;

fn cases() -> Option<Value> {
    let dir = match std::env::var_os("GANTRY_PROTOCOL_TESTS") {
        Some(d) => PathBuf::from(d),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../../target/protocol-tests/botocore-1.44.8/tests/unit/protocols"),
    };
    let text = std::fs::read_to_string(dir.join("input/rest-json.json")).ok()?;
    serde_json::from_str(&text).ok()
}

fn run(suite: &Value, case: &Value) -> Result<(), String> {
    let given = case["given"].clone();
    let name = given["name"].as_str().unwrap_or("Operation").to_string();
    let doc = json!({"metadata": suite["metadata"], "operations": {name.clone(): given}, "shapes": suite["shapes"]});
    let model = Model::from_json(&serde_json::to_vec(&doc).unwrap()).map_err(|e| format!("model: {e}"))?;
    let s = &case["serialized"];
    let method = s["method"].as_str().unwrap_or("GET");
    let uri = s["uri"].as_str().unwrap_or("/");
    let (path, query) = uri.split_once('?').unwrap_or((uri, ""));
    let headers: Vec<(String, Vec<u8>)> = s["headers"]
        .as_object()
        .map(|h| {
            h.iter().map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().as_bytes().to_vec())).collect()
        })
        .unwrap_or_default();
    let header_refs: Vec<(&str, &[u8])> = headers.iter().map(|(k, v)| (k.as_str(), v.as_slice())).collect();
    let body = s["body"].as_str().unwrap_or("").as_bytes().to_vec();
    let (op, labels) = operation(&model, method, path).map_err(|e| format!("operation: {e}"))?;
    if op != name {
        return Err(format!("operation {op}, expected {name}"));
    }
    let req = RestRequest { method, path, query, headers: &header_refs, body: &body };
    let got = parse_request(&model, &op, &labels, &req).map_err(|e| format!("parse_request: {e}"))?;
    let input = case["given"]["input"]["shape"].as_str().unwrap_or("");
    let want = normalize(&model, input, &case["params"]).unwrap_or(json!({}));
    if !same(&got, &want) {
        return Err(format!("read {got}, expected {want}"));
    }
    Ok(())
}

#[test]
fn botocore_rest_json_input_cases() {
    let Some(suites) = cases() else {
        panic!("the protocol test cases are missing: run scripts/protocol-tests.sh");
    };
    let (mut passed, mut failed) = (0, Vec::new());
    for suite in suites.as_array().into_iter().flatten() {
        for case in suite["cases"].as_array().into_iter().flatten() {
            match run(suite, case) {
                Ok(()) => passed += 1,
                Err(e) => failed.push(format!("{}: {e}", case["id"].as_str().unwrap_or("?"))),
            }
        }
    }
    eprintln!("restJson1 input: {passed} passed, {} failed", failed.len());
    for f in &failed {
        eprintln!("  {f}");
    }
    assert!(passed >= FLOOR, "restJson1 input: {passed} passed, below the floor of {FLOOR}");
}
