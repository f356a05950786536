//! The official AWS protocol test cases (botocore's `tests/unit/protocols`), run in the server's
//! direction.
//!
//! - **input** cases are client serialization tests (params → request). The server reads the
//!   serialized request (protocol, operation, body) and must get back the params.
//! - **output** cases are client parsing tests (response → result). The server encodes the
//!   result; decoding that (the way botocore does) must give the result again, and so must
//!   decoding the case's own response body, so ours and AWS's say the same. Error cases check
//!   the code, message and fields an SDK would read, and the status.
//!
//! The cases are fetched by `scripts/protocol-tests.sh`, never committed. Skips are counted and
//! listed by reason, and each suite must pass at least its recorded floor.

use base64::Engine;
use gantry_protocol::{
    Model, Protocol, ServiceError, cbor, operation_name, parse_request, serialize_error, serialize_response,
    time,
};
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;
use std::path::PathBuf;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// Each suite: its name in the summary, the file, the ignore list's key, the protocol, and the
/// floor of passing cases for input and output (raise them when more pass, never lower them).
const SUITES: &[(&str, &str, &str, Protocol, usize, usize)] = &[
    ("awsJson1_1", "json.json", "json", Protocol::AwsJson1_1, 50, 52),
    ("awsJson1_0", "json_1_0.json", "json_1_0", Protocol::AwsJson1_0, 18, 26),
    ("awsJson1_0 query-compatible", "json_1_0-query-compatible.json", "json_1_0", Protocol::AwsJson1_0, 1, 2),
    ("awsQuery", "query.json", "query", Protocol::AwsQuery, 32, 36),
    ("rpcv2Cbor", "smithy-rpc-v2-cbor.json", "smithy-rpc-v2-cbor", Protocol::RpcV2Cbor, 15, 33),
    (
        "rpcv2Cbor query-compatible",
        "smithy-rpc-v2-cbor-query-compatible.json",
        "smithy-rpc-v2-cbor",
        Protocol::RpcV2Cbor,
        1,
        2,
    ),
    (
        "rpcv2Cbor non-query-compatible",
        "smithy-rpc-v2-cbor-non-query-compatible.json",
        "smithy-rpc-v2-cbor",
        Protocol::RpcV2Cbor,
        1,
        0,
    ),
];

fn cases_dir() -> PathBuf {
    match std::env::var_os("GANTRY_PROTOCOL_TESTS") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../../target/protocol-tests/botocore-1.44.8/tests/unit/protocols"),
    }
}

#[derive(Default)]
struct Tally {
    passed: usize,
    failed: Vec<String>,
    skipped: BTreeMap<&'static str, Vec<String>>,
}

impl Tally {
    fn summary(&self, name: &str) -> String {
        let reasons: Vec<String> = self
            .skipped
            .iter()
            .map(|(reason, ids)| format!("{} {reason}: {}", ids.len(), ids.join(", ")))
            .collect();
        let skipped: usize = self.skipped.values().map(Vec::len).sum();
        format!(
            "{name}: {} passed, {} failed, {skipped} skipped{}",
            self.passed,
            self.failed.len(),
            if reasons.is_empty() { String::new() } else { format!(" ({})", reasons.join("; ")) }
        )
    }
}

/// Why a case does not apply to a server, if it does not.
fn skip_reason(
    ignore: &Value,
    direction: &str,
    key: &str,
    suite: &Value,
    case: &Value,
) -> Option<&'static str> {
    let description = suite["description"].as_str().unwrap_or("");
    let id = case["id"].as_str().unwrap_or("");
    let listed = |v: &Value, s: &str| v.as_array().is_some_and(|a| a.iter().any(|x| x == s));
    if listed(&ignore["general"][direction]["suites"], description)
        || listed(&ignore["protocols"][key][direction]["cases"], id)
    {
        return Some("in botocore's ignore list");
    }
    None
}

/// A model for one case: the suite's metadata and shapes, the case's operation. `twin` makes the
/// operation's output its input too, so the crate's request readers can decode responses.
fn case_model(suite: &Value, case: &Value, twin: bool) -> (Model, String) {
    let mut given = case["given"].clone();
    let name = given["name"].as_str().unwrap_or("Operation").to_string();
    if twin {
        given["input"] = given["output"].clone();
    }
    let doc = json!({
        "metadata": suite["metadata"],
        "operations": {name.clone(): given},
        "shapes": suite["shapes"],
    });
    let model = Model::from_json(&serde_json::to_vec(&doc).unwrap())
        .unwrap_or_else(|e| panic!("case {}: model does not load: {e}", case["id"]));
    (model, name)
}

/// The test's params or result in the in-memory form: blobs (raw strings there) as base64,
/// timestamps as epoch seconds, no nulls.
pub(crate) fn normalize(model: &Model, shape: &str, v: &Value) -> Option<Value> {
    use gantry_protocol::model::Shape;
    if v.is_null() {
        return None;
    }
    Some(match (model.shape(shape), v) {
        (Some(Shape::Structure(s)), Value::Object(o)) => Value::Object(
            o.iter()
                .filter_map(|(k, v)| {
                    let shape = s.member(k).map(|m| m.shape.as_str()).unwrap_or("");
                    normalize(model, shape, v).map(|v| (k.clone(), v))
                })
                .collect(),
        ),
        (Some(Shape::List { member, .. }), Value::Array(items)) => Value::Array(
            items.iter().map(|i| normalize(model, &member.shape, i).unwrap_or(Value::Null)).collect(),
        ),
        (Some(Shape::Map { value, .. }), Value::Object(o)) => Value::Object(
            o.iter().filter_map(|(k, v)| normalize(model, &value.shape, v).map(|v| (k.clone(), v))).collect(),
        ),
        (Some(Shape::Blob), Value::String(s)) => Value::String(B64.encode(s.as_bytes())),
        (Some(Shape::Timestamp { .. }), Value::Number(n)) => time::epoch_value(n.as_f64().unwrap()),
        (Some(Shape::Timestamp { .. }), Value::String(s)) => time::epoch_value(time::parse_any(s).unwrap()),
        _ => v.clone(),
    })
}

/// awsQuery cannot carry an empty map (it sends nothing), so the server sees none.
fn drop_empty_maps(v: &mut Value) {
    if let Value::Object(o) = v {
        o.retain(|_, v| !matches!(v, Value::Object(m) if m.is_empty()));
        o.values_mut().for_each(drop_empty_maps);
    }
}

/// Equality with numbers compared as numbers (1 == 1.0, and within float rounding).
pub(crate) fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            let (x, y) = (x.as_f64().unwrap(), y.as_f64().unwrap());
            x == y || (x - y).abs() <= 1e-6 * x.abs().max(1.0)
        }
        (Value::Array(x), Value::Array(y)) => x.len() == y.len() && x.iter().zip(y).all(|(a, b)| same(a, b)),
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same(v, w)))
        }
        _ => a == b,
    }
}

fn header<'a>(headers: &'a Value, name: &str) -> Option<&'a str> {
    headers.as_object()?.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).and_then(|(_, v)| v.as_str())
}

fn body_bytes(protocol: Protocol, body: &Value) -> Vec<u8> {
    let body = body.as_str().unwrap_or("");
    match protocol {
        Protocol::RpcV2Cbor => B64.decode(body).expect("CBOR bodies are base64 in the cases"),
        _ => body.as_bytes().to_vec(),
    }
}

fn run_input(protocol: Protocol, suite: &Value, case: &Value) -> Result<(), String> {
    let (model, op) = case_model(suite, case, false);
    let serialized = &case["serialized"];
    let headers = &serialized["headers"];
    let body = body_bytes(protocol, &serialized["body"]);
    let uri = serialized["uri"].as_str().unwrap_or("/");
    let (protocol, op) = if headers.as_object().is_some_and(|h| !h.is_empty()) {
        let target = header(headers, "X-Amz-Target");
        let found = Protocol::accept(
            &model,
            header(headers, "Content-Type"),
            target,
            header(headers, "smithy-protocol"),
            uri,
        )
        .map_err(|e| format!("protocol not accepted: {e}"))?;
        if found != protocol {
            return Err(format!("detected {found:?}, expected {protocol:?}"));
        }
        let name =
            operation_name(found, &model, target, uri, &body).map_err(|e| format!("operation: {e}"))?;
        if name != op {
            return Err(format!("operation {name}, expected {op}"));
        }
        (found, name)
    } else {
        (protocol, op)
    };
    let got = parse_request(protocol, &model, &op, &body).map_err(|e| format!("parse_request: {e}"))?;
    let input = case["given"]["input"]["shape"].as_str().unwrap_or("");
    let mut want = normalize(&model, input, &case["params"]).unwrap_or(json!({}));
    if protocol == Protocol::AwsQuery {
        drop_empty_maps(&mut want);
    }
    if !same(&got, &want) {
        return Err(format!("read {got}, expected {want}"));
    }
    Ok(())
}

/// A CBOR value as JSON that keeps what matters on the wire: tags, byte strings, text versus
/// numbers; nulls in maps dropped (they mean absent).
fn cbor_shape(v: &ciborium::Value) -> Value {
    use ciborium::Value as C;
    match v {
        C::Tag(t, inner) => json!({ "tag": t, "value": cbor_shape(inner) }),
        C::Bytes(b) => json!({ "bytes": B64.encode(b) }),
        C::Float(f) if !f.is_finite() => json!({ "float": f.to_string() }),
        C::Array(items) => Value::Array(items.iter().map(cbor_shape).collect()),
        C::Map(entries) => Value::Object(
            entries
                .iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| {
                    (k.as_text().map(str::to_string).unwrap_or_else(|| format!("{k:?}")), cbor_shape(v))
                })
                .collect(),
        ),
        other => cbor::to_json(other.clone(), "").unwrap_or(Value::Null),
    }
}

/// Decodes a response body of ours or of the case's, as botocore would.
fn decode(protocol: Protocol, twin: &Model, op: &str, body: &[u8]) -> Result<Value, String> {
    match protocol {
        Protocol::AwsQuery => xml::decode_response(twin, op, body),
        _ => parse_request(protocol, twin, op, body).map_err(|e| e.to_string()),
    }
}

fn run_output(protocol: Protocol, suite: &Value, case: &Value) -> Result<(), String> {
    let response = &case["response"];
    let status = response["status_code"].as_u64().unwrap_or(200) as u16;
    if let Some(code) = case["errorCode"].as_str() {
        return run_error(protocol, suite, case, code, status);
    }
    let (model, op) = case_model(suite, case, false);
    let (twin, _) = case_model(suite, case, true);
    let output = case["given"]["output"]["shape"].as_str().unwrap_or("");
    let result = normalize(&model, output, &case["result"]).unwrap_or(json!({}));
    let encoded = serialize_response(protocol, &model, &op, &result, "foo-id");
    if encoded.status != status {
        return Err(format!("status {}, expected {status}", encoded.status));
    }
    if let Some(ct) = header(&response["headers"], "Content-Type")
        && !ct.starts_with(encoded.content_type)
        && !(protocol == Protocol::AwsQuery && encoded.content_type == "text/xml")
    {
        return Err(format!("content type {}, expected {ct}", encoded.content_type));
    }
    if protocol == Protocol::RpcV2Cbor
        && !encoded.headers.iter().any(|(k, v)| k == "smithy-protocol" && v == "rpc-v2-cbor")
    {
        return Err("no smithy-protocol: rpc-v2-cbor header".into());
    }
    let ours =
        decode(protocol, &twin, &op, &encoded.body).map_err(|e| format!("our body does not decode: {e}"))?;
    if !same(&ours, &result) {
        return Err(format!("our body decodes to {ours}, expected {result}"));
    }
    let theirs = body_bytes(protocol, &response["body"]);
    if !theirs.is_empty() {
        let theirs = decode(protocol, &twin, &op, &theirs)
            .map_err(|e| format!("the case's body does not decode: {e}"))?;
        if !same(&ours, &theirs) {
            return Err(format!("our body decodes to {ours}, the case's to {theirs}"));
        }
    }
    // CBOR's readers accept more than its writers may send (a timestamp as text, say), so the
    // bodies are also compared as CBOR: same types, tag 1 and byte strings included.
    if protocol == Protocol::RpcV2Cbor && !response["body"].as_str().unwrap_or("").is_empty() {
        let raw = |b: &[u8]| -> Result<Value, String> {
            let v: ciborium::Value = ciborium::de::from_reader(b).map_err(|e| e.to_string())?;
            Ok(cbor_shape(&v))
        };
        let (ours, mut theirs) = (raw(&encoded.body)?, raw(&body_bytes(protocol, &response["body"]))?);
        // Members the output shape lacks are there to test that clients skip them.
        if let (Some(shape), Value::Object(o)) = (model.structure(output), &mut theirs) {
            o.retain(|k, _| shape.member(k).is_some());
        }
        if !same(&ours, &theirs) {
            return Err(format!("our CBOR is {ours}, the case's {theirs}"));
        }
    }
    Ok(())
}

fn run_error(protocol: Protocol, suite: &Value, case: &Value, code: &str, status: u16) -> Result<(), String> {
    let (model, _) = case_model(suite, case, false);
    let message = case["errorMessage"].as_str().unwrap_or("");
    let mut fields: Map<String, Value> = case["error"].as_object().cloned().unwrap_or_default();
    fields.remove("Message");
    fields.remove("message");
    let err = ServiceError {
        code: code.to_string(),
        sender_fault: status < 500,
        message: message.to_string(),
        status,
        fields: fields.clone(),
    };
    let encoded = serialize_error(protocol, &model, &err, "foo-id");
    if encoded.status != status {
        return Err(format!("status {}, expected {status}", encoded.status));
    }
    let (got_code, got_message, got_fields) = match protocol {
        Protocol::AwsQuery => xml::decode_error(&encoded.body)?,
        _ => {
            let body = match protocol {
                Protocol::RpcV2Cbor => cbor::to_json(
                    ciborium::de::from_reader(&encoded.body[..]).map_err(|e| format!("bad CBOR: {e}"))?,
                    "",
                )
                .map_err(|e| e.to_string())?,
                _ => serde_json::from_slice(&encoded.body).map_err(|e| format!("bad JSON: {e}"))?,
            };
            let Value::Object(mut body) = body else { return Err(format!("error body {body} is not a map")) };
            let type_name =
                body.remove("__type").and_then(|t| t.as_str().map(str::to_string)).unwrap_or_default();
            // botocore: the code after any namespace (`ns#Code`) and before any URI (`Code:uri`).
            let bare = type_name.rsplit('#').next().unwrap_or("").split(':').next().unwrap_or("").to_string();
            let query_header = encoded.headers.iter().find(|(k, _)| k == "x-amzn-query-error");
            let code = match query_header {
                Some((_, v)) if model.metadata.query_compatible => {
                    v.split(';').next().unwrap_or("").to_string()
                }
                _ => bare,
            };
            let message = body.remove("message").or_else(|| body.remove("Message"));
            let message = message.and_then(|m| m.as_str().map(str::to_string)).unwrap_or_default();
            (code, message, body)
        }
    };
    if got_code != code {
        return Err(format!("code {got_code:?}, expected {code:?}"));
    }
    if got_message != message {
        return Err(format!("message {got_message:?}, expected {message:?}"));
    }
    if !same(&Value::Object(got_fields.clone()), &Value::Object(fields.clone())) {
        return Err(format!("fields {got_fields:?}, expected {fields:?}"));
    }
    Ok(())
}

#[test]
fn botocore_protocol_test_cases() {
    let dir = cases_dir();
    let ignore_path = dir.join("protocol-tests-ignore-list.json");
    let Ok(ignore) = std::fs::read(&ignore_path) else {
        panic!(
            "the AWS protocol test cases are missing at {}: run scripts/protocol-tests.sh (or set \
             GANTRY_PROTOCOL_TESTS to their directory)",
            dir.display()
        );
    };
    let ignore: Value = serde_json::from_slice(&ignore).unwrap();
    let mut lines = Vec::new();
    let mut below_floor = Vec::new();
    let (mut total_passed, mut total_failed) = (0, 0);
    for &(name, file, key, protocol, input_floor, output_floor) in SUITES {
        for (direction, floor) in [("input", input_floor), ("output", output_floor)] {
            let path = dir.join(direction).join(file);
            let suites: Vec<Value> = serde_json::from_slice(
                &std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())),
            )
            .unwrap();
            let mut tally = Tally::default();
            for suite in &suites {
                for case in suite["cases"].as_array().into_iter().flatten() {
                    let id = case["id"].as_str().unwrap_or("?").to_string();
                    let run = if direction == "input" { run_input } else { run_output };
                    let outcome = std::panic::catch_unwind(|| run(protocol, suite, case))
                        .unwrap_or_else(|_| Err("panicked".to_string()));
                    // Ignored cases still run, so the summary says which of them a server passes.
                    match (skip_reason(&ignore, direction, key, suite, case), outcome) {
                        (Some(reason), Ok(())) => {
                            tally.skipped.entry(reason).or_default().push(format!("{id} (passes)"))
                        }
                        (Some(reason), Err(why)) => {
                            if std::env::var_os("GANTRY_PROTOCOL_WHY").is_some() {
                                println!("    ignored {id}: {why}");
                            }
                            tally.skipped.entry(reason).or_default().push(id)
                        }
                        (None, Ok(())) => tally.passed += 1,
                        (None, Err(why)) => tally.failed.push(format!("{id}: {why}")),
                    }
                }
            }
            let line = tally.summary(&format!("{name} {direction}"));
            println!("{line}");
            for failure in &tally.failed {
                println!("    FAILED {failure}");
            }
            if tally.passed < floor {
                below_floor.push(format!("{name} {direction}: {} passed, floor {floor}", tally.passed));
            }
            total_passed += tally.passed;
            total_failed += tally.failed.len();
            lines.push(line);
        }
    }
    eprintln!("{}", lines.join("\n"));
    assert!(
        below_floor.is_empty() && total_failed == 0,
        "protocol conformance failed (below floor: {}); {total_passed} passed, {total_failed} failed in all\n{}",
        below_floor.join("; "),
        lines.join("\n")
    );
    eprintln!("protocol conformance: {total_passed} passed, {total_failed} failed");
}

/// botocore's reading of awsQuery XML, for the test's side: a tree, then a walk of the model.
mod xml {
    use super::*;
    use gantry_protocol::model::{Member, Shape, Structure, TimestampFormat};
    use quick_xml::events::Event;

    #[derive(Debug, Default)]
    pub struct Element {
        pub name: String,
        pub text: String,
        pub children: Vec<Element>,
    }

    impl Element {
        fn child(&self, name: &str) -> Option<&Element> {
            self.children.iter().find(|c| c.name == name)
        }
        fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Element> {
            self.children.iter().filter(move |c| c.name == name)
        }
    }

    fn local(name: &[u8]) -> String {
        let name = String::from_utf8_lossy(name);
        name.rsplit(':').next().unwrap_or("").to_string()
    }

    pub fn parse(body: &[u8]) -> Result<Element, String> {
        let mut reader = quick_xml::Reader::from_reader(body);
        let mut stack = vec![Element::default()];
        loop {
            match reader.read_event().map_err(|e| format!("bad XML: {e}"))? {
                Event::Start(e) => {
                    stack.push(Element { name: local(e.name().as_ref()), ..Default::default() })
                }
                Event::Empty(e) => {
                    let el = Element { name: local(e.name().as_ref()), ..Default::default() };
                    stack.last_mut().unwrap().children.push(el);
                }
                Event::End(_) => {
                    let el = stack.pop().unwrap();
                    stack.last_mut().ok_or("unbalanced XML")?.children.push(el);
                }
                Event::Text(t) => {
                    let t = t.xml_content().map_err(|e| format!("bad XML text: {e}"))?;
                    stack.last_mut().unwrap().text.push_str(&t);
                }
                Event::GeneralRef(r) => {
                    let name = String::from_utf8_lossy(&r).to_string();
                    let c = match name.as_str() {
                        "amp" => '&',
                        "lt" => '<',
                        "gt" => '>',
                        "quot" => '"',
                        "apos" => '\'',
                        n if n.starts_with("#x") => {
                            char::from_u32(u32::from_str_radix(&n[2..], 16).unwrap()).unwrap()
                        }
                        n if n.starts_with('#') => char::from_u32(n[1..].parse().unwrap()).unwrap(),
                        n => return Err(format!("unknown entity {n}")),
                    };
                    stack.last_mut().unwrap().text.push(c);
                }
                Event::CData(t) => stack.last_mut().unwrap().text.push_str(&String::from_utf8_lossy(&t)),
                Event::Eof => break,
                _ => {}
            }
        }
        let mut doc = stack.pop().ok_or("empty XML")?;
        doc.children.pop().ok_or_else(|| "no root element".to_string())
    }

    pub fn decode_response(model: &Model, op: &str, body: &[u8]) -> Result<Value, String> {
        let root = parse(body)?;
        let operation = model.operation(op).unwrap();
        let Some(output) = operation.output.as_deref().and_then(|s| model.structure(s)) else {
            return Ok(json!({}));
        };
        let wrapper = operation.result_wrapper.clone().unwrap_or_else(|| format!("{op}Result"));
        match root.child(&wrapper) {
            Some(result) => Ok(Value::Object(structure(model, output, result)?)),
            None => Ok(json!({})),
        }
    }

    pub fn decode_error(body: &[u8]) -> Result<(String, String, Map<String, Value>), String> {
        let root = parse(body)?;
        let error = root.child("Error").ok_or("no <Error>")?;
        let text = |n: &str| error.child(n).map(|e| e.text.clone()).unwrap_or_default();
        let mut fields = Map::new();
        for child in error.children.iter().filter(|c| !matches!(c.name.as_str(), "Type" | "Code" | "Message"))
        {
            fields.insert(child.name.clone(), generic(child));
        }
        Ok((text("Code"), text("Message"), fields))
    }

    fn generic(e: &Element) -> Value {
        if e.children.is_empty() {
            Value::String(e.text.clone())
        } else {
            Value::Object(e.children.iter().map(|c| (c.name.clone(), generic(c))).collect())
        }
    }

    fn structure(model: &Model, shape: &Structure, e: &Element) -> Result<Map<String, Value>, String> {
        let mut out = Map::new();
        for (name, member) in &shape.members {
            let flat_list = match model.shape(&member.shape) {
                Some(Shape::List { member: item, flattened }) if *flattened || member.flattened => Some(item),
                _ => None,
            };
            let flat_map = matches!(model.shape(&member.shape), Some(Shape::Map { flattened, .. }) if *flattened || member.flattened);
            let element = match flat_list {
                Some(item) => {
                    item.location_name.as_deref().or(member.location_name.as_deref()).unwrap_or(name)
                }
                None => member.location_name.as_deref().unwrap_or(name),
            };
            if let Some(item) = flat_list {
                let items: Vec<Value> =
                    e.all(element).map(|c| value(model, item, c)).collect::<Result<_, _>>()?;
                if !items.is_empty() {
                    out.insert(name.clone(), Value::Array(items));
                }
            } else if flat_map {
                let Some(Shape::Map { key, value: v, .. }) = model.shape(&member.shape) else {
                    unreachable!()
                };
                let mut m = Map::new();
                for entry in e.all(element) {
                    map_entry(model, key, v, entry, &mut m)?;
                }
                if !m.is_empty() {
                    out.insert(name.clone(), Value::Object(m));
                }
            } else if let Some(child) = e.child(element) {
                out.insert(name.clone(), value(model, member, child)?);
            }
        }
        Ok(out)
    }

    fn map_entry(
        model: &Model,
        key: &Member,
        v: &Member,
        entry: &Element,
        out: &mut Map<String, Value>,
    ) -> Result<(), String> {
        let k = entry
            .child(key.location_name.as_deref().unwrap_or("key"))
            .map(|k| k.text.clone())
            .unwrap_or_default();
        if let Some(value_el) = entry.child(v.location_name.as_deref().unwrap_or("value")) {
            out.insert(k, value(model, v, value_el)?);
        }
        Ok(())
    }

    fn value(model: &Model, member: &Member, e: &Element) -> Result<Value, String> {
        let text = e.text.trim();
        Ok(match model.shape(&member.shape) {
            Some(Shape::Structure(s)) => Value::Object(structure(model, s, e)?),
            Some(Shape::List { member: item, .. }) => {
                let item_name = item.location_name.as_deref().unwrap_or("member");
                Value::Array(e.all(item_name).map(|c| value(model, item, c)).collect::<Result<_, _>>()?)
            }
            Some(Shape::Map { key, value: v, .. }) => {
                let mut m = Map::new();
                for entry in e.all("entry") {
                    map_entry(model, key, v, entry, &mut m)?;
                }
                Value::Object(m)
            }
            Some(Shape::Boolean) => Value::Bool(text == "true"),
            Some(Shape::Integer) => {
                Value::Number(text.parse::<i64>().map_err(|_| format!("bad integer {text:?}"))?.into())
            }
            Some(Shape::Float) => match text {
                "NaN" | "Infinity" | "-Infinity" => Value::String(text.to_string()),
                _ => json!(text.parse::<f64>().map_err(|_| format!("bad float {text:?}"))?),
            },
            Some(Shape::Timestamp { .. }) => {
                let epoch = match model.timestamp_format(member) {
                    Some(TimestampFormat::UnixTimestamp) => text.parse().ok(),
                    _ => time::parse_any(text),
                };
                time::epoch_value(epoch.ok_or_else(|| format!("bad timestamp {text:?}"))?)
            }
            _ => Value::String(e.text.clone()),
        })
    }
}
