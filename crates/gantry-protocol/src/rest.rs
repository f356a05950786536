//! restJson1 (botocore's `rest-json`), server side, driven by the model's `http` traits: the
//! operation is the one whose method and URI template match the request; its input members come
//! from URI labels (`{Name}`, greedy `{Key+}`), the query string, headers and the JSON body (or
//! the `payload` member alone); the output's located members go back as headers and the status
//! code, the rest as the JSON body, with the operation's `responseCode`. Values are read into and
//! written from the same in-memory form as awsJson's (timestamps epoch seconds), so a service
//! sees no difference. Querystring timestamps are ISO 8601 and header timestamps HTTP dates,
//! unless the member says otherwise.

use crate::json;
use crate::model::{Model, Shape, Structure, TimestampFormat};
use crate::{Encoded, ProtocolError};
use serde_json::{Map, Value};

/// What a restJson1 request carries besides its body.
#[derive(Debug, Clone, Copy)]
pub struct RestRequest<'a> {
    pub method: &'a str,
    /// The path, still percent-encoded.
    pub path: &'a str,
    /// The raw query string (without `?`).
    pub query: &'a str,
    pub headers: &'a [(&'a str, &'a [u8])],
    pub body: &'a [u8],
}

fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(b) = s.get(i + 1..i + 3).and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Matches a URI template's path against a request path: the labels' values, decoded.
fn match_path(template: &str, path: &str) -> Option<Vec<(String, String)>> {
    let template = template.split('?').next().unwrap_or_default();
    let t: Vec<&str> = template.trim_start_matches('/').split('/').collect();
    let p: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let mut labels = Vec::new();
    for (i, seg) in t.iter().enumerate() {
        if let Some(label) = seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
            if let Some(greedy) = label.strip_suffix('+') {
                let rest = p.get(i..)?.join("/");
                if rest.is_empty() {
                    return None;
                }
                labels.push((greedy.to_string(), decode(&rest)));
                return Some(labels);
            }
            let v = p.get(i)?;
            if v.is_empty() {
                return None;
            }
            labels.push((label.to_string(), decode(v)));
        } else if p.get(i) != Some(seg) {
            return None;
        }
    }
    (p.len() == t.len()).then_some(labels)
}

/// The operation whose `http` trait matches the method and path, with the URI labels' values.
pub fn operation(
    model: &Model,
    method: &str,
    path: &str,
) -> Result<(String, Vec<(String, String)>), ProtocolError> {
    // Literal segments beat labels: try the templates with more literal characters first.
    let mut candidates: Vec<(&String, &crate::model::Http)> =
        model.operations.iter().filter_map(|(n, o)| o.http.as_ref().map(|h| (n, h))).collect();
    candidates.sort_by_key(|(_, h)| std::cmp::Reverse(h.request_uri.chars().filter(|c| *c != '{').count()));
    let mut path_matched = false;
    for (name, http) in candidates {
        if let Some(labels) = match_path(&http.request_uri, path) {
            path_matched = true;
            if http.method.eq_ignore_ascii_case(method) {
                return Ok((name.clone(), labels));
            }
        }
    }
    Err(ProtocolError::UnknownOperation(if path_matched {
        format!("{method} {path}")
    } else {
        path.to_string()
    }))
}

/// A scalar from a URI label, query parameter or header, in the in-memory form.
fn scalar(
    model: &Model,
    shape: &str,
    raw: &str,
    ts_default: TimestampFormat,
    path: &str,
) -> Result<Value, ProtocolError> {
    let bad = |what: &str| ProtocolError::invalid(path, format!("expected {what}, found {raw:?}"));
    Ok(match model.shape(shape) {
        Some(Shape::Integer) => Value::from(raw.trim().parse::<i64>().map_err(|_| bad("an integer"))?),
        Some(Shape::Float) => {
            serde_json::Number::from_f64(raw.trim().parse::<f64>().map_err(|_| bad("a number"))?)
                .map(Value::Number)
                .unwrap_or_else(|| Value::String(raw.to_string()))
        }
        Some(Shape::Boolean) => match raw {
            "true" => Value::Bool(true),
            "false" => Value::Bool(false),
            _ => return Err(bad("true or false")),
        },
        Some(Shape::Timestamp { format }) => {
            let epoch = match format.unwrap_or(ts_default) {
                TimestampFormat::Iso8601 => crate::time::parse_iso8601(raw),
                TimestampFormat::Rfc822 => crate::time::parse_http_date(raw),
                TimestampFormat::UnixTimestamp => raw.parse().ok(),
            }
            .or_else(|| crate::time::parse_any(raw))
            .ok_or_else(|| bad("a timestamp"))?;
            crate::time::epoch_value(epoch)
        }
        _ => Value::String(raw.to_string()),
    })
}

/// Reads a restJson1 request into the in-memory form of the operation's input.
pub fn parse_request(
    model: &Model,
    op: &str,
    labels: &[(String, String)],
    req: &RestRequest<'_>,
) -> Result<Value, ProtocolError> {
    let operation = model.operation(op).ok_or_else(|| ProtocolError::UnknownOperation(op.to_string()))?;
    let Some(shape) = operation.input.as_deref().and_then(|s| model.structure(s)) else {
        return Ok(Value::Object(Map::new()));
    };
    let body_members = body_structure(shape);
    let mut out = match &shape.payload {
        Some(name) => {
            let mut m = Map::new();
            if let Some(member) = shape.member(name)
                && !req.body.iter().all(u8::is_ascii_whitespace)
            {
                let v = match model.shape(&member.shape) {
                    Some(Shape::Structure(_)) | Some(Shape::Document) => serde_json::from_slice(req.body)
                        .map_err(|e| {
                            ProtocolError::Malformed(format!("request body is not valid JSON: {e}"))
                        })?,
                    Some(Shape::Blob) => {
                        use base64::Engine;
                        Value::String(base64::engine::general_purpose::STANDARD.encode(req.body))
                    }
                    _ => Value::String(String::from_utf8_lossy(req.body).into_owned()),
                };
                if let Some(v) = json::read(model, json::Wire::Json, member, v, name)? {
                    m.insert(name.clone(), v);
                }
            }
            m
        }
        None if req.body.iter().all(u8::is_ascii_whitespace) => Map::new(),
        None => {
            let v: Value = serde_json::from_slice(req.body)
                .map_err(|e| ProtocolError::Malformed(format!("request body is not valid JSON: {e}")))?;
            json::read_structure(model, json::Wire::Json, &body_members, v, "")?
        }
    };
    let query: Vec<(String, String)> =
        form_urlencoded::parse(req.query.as_bytes()).map(|(k, v)| (k.into_owned(), v.into_owned())).collect();
    for (name, member) in &shape.members {
        let wire = member.location_name.as_deref().unwrap_or(name);
        match member.location.as_deref() {
            Some("uri") => {
                if let Some((_, v)) = labels.iter().find(|(l, _)| l == wire) {
                    out.insert(
                        name.clone(),
                        scalar(model, &member.shape, v, TimestampFormat::Iso8601, name)?,
                    );
                }
            }
            Some("querystring") => match model.shape(&member.shape) {
                Some(Shape::List { member: item, .. }) => {
                    let items: Vec<Value> = query
                        .iter()
                        .filter(|(k, _)| k == wire)
                        .map(|(_, v)| scalar(model, &item.shape, v, TimestampFormat::Iso8601, name))
                        .collect::<Result<_, _>>()?;
                    if !items.is_empty() {
                        out.insert(name.clone(), Value::Array(items));
                    }
                }
                Some(Shape::Map { .. }) => {
                    let taken: Vec<&str> = shape
                        .members
                        .iter()
                        .filter(|(_, m)| m.location.as_deref() == Some("querystring"))
                        .map(|(n, m)| m.location_name.as_deref().unwrap_or(n))
                        .collect();
                    let m: Map<String, Value> = query
                        .iter()
                        .filter(|(k, _)| !taken.contains(&k.as_str()))
                        .map(|(k, v)| (k.clone(), Value::String(v.clone())))
                        .collect();
                    if !m.is_empty() {
                        out.insert(name.clone(), Value::Object(m));
                    }
                }
                _ => {
                    if let Some((_, v)) = query.iter().find(|(k, _)| k == wire) {
                        out.insert(
                            name.clone(),
                            scalar(model, &member.shape, v, TimestampFormat::Iso8601, name)?,
                        );
                    }
                }
            },
            Some("header") => {
                let found = req.headers.iter().find(|(h, _)| h.eq_ignore_ascii_case(wire));
                if let Some((_, v)) = found {
                    let v = String::from_utf8_lossy(v);
                    out.insert(
                        name.clone(),
                        scalar(model, &member.shape, v.trim(), TimestampFormat::Rfc822, name)?,
                    );
                }
            }
            Some("headers") => {
                let prefix = wire.to_ascii_lowercase();
                let m: Map<String, Value> = req
                    .headers
                    .iter()
                    .filter_map(|(h, v)| {
                        let h = h.to_ascii_lowercase();
                        let k = h.strip_prefix(&prefix)?.to_string();
                        Some((k, Value::String(String::from_utf8_lossy(v).into_owned())))
                    })
                    .collect();
                if !m.is_empty() {
                    out.insert(name.clone(), Value::Object(m));
                }
            }
            _ => {}
        }
    }
    Ok(Value::Object(out))
}

/// The members a structure carries in its JSON body (those with no location).
fn body_structure(shape: &Structure) -> Structure {
    Structure {
        members: shape.members.iter().filter(|(_, m)| m.location.is_none()).cloned().collect(),
        ..shape.clone()
    }
}

/// A scalar for a header.
fn header_value(model: &Model, shape: &str, v: &Value) -> Option<String> {
    match (model.shape(shape), v) {
        (Some(Shape::Timestamp { format }), v) => {
            let epoch = json::epoch_of(v)?;
            Some(match format.unwrap_or(TimestampFormat::Rfc822) {
                TimestampFormat::Iso8601 => crate::time::format_iso8601(epoch),
                TimestampFormat::UnixTimestamp => epoch.to_string(),
                TimestampFormat::Rfc822 => crate::time::format_http_date(epoch),
            })
        }
        (_, Value::String(s)) => Some(s.clone()),
        (_, Value::Null) => None,
        (_, other) => Some(other.to_string()),
    }
}

/// Encodes an operation's output: located members as headers and status, the rest as the body.
pub fn serialize_response(model: &Model, op: &str, v: &Value, request_id: &str) -> Encoded {
    let operation = model.operation(op);
    let mut status = operation.and_then(|o| o.http.as_ref()).and_then(|h| h.response_code).unwrap_or(200);
    let output = operation.and_then(|o| o.output.as_deref()).and_then(|s| model.structure(s));
    let mut headers = vec![("x-amzn-RequestId".to_string(), request_id.to_string())];
    let empty = Map::new();
    let object = v.as_object().unwrap_or(&empty);
    let body = match output {
        None => b"{}".to_vec(),
        Some(shape) => {
            for (name, member) in &shape.members {
                let wire = member.location_name.as_deref().unwrap_or(name);
                let Some(value) = object.get(name) else { continue };
                match member.location.as_deref() {
                    Some("header") => {
                        if let Some(h) = header_value(model, &member.shape, value) {
                            headers.push((wire.to_string(), h));
                        }
                    }
                    Some("headers") => {
                        for (k, x) in value.as_object().into_iter().flatten() {
                            if let Some(x) = x.as_str() {
                                headers.push((format!("{wire}{k}"), x.to_string()));
                            }
                        }
                    }
                    Some("statusCode") => {
                        if let Some(s) = value.as_u64().and_then(|s| u16::try_from(s).ok()) {
                            status = s;
                        }
                    }
                    _ => {}
                }
            }
            match &shape.payload {
                Some(p) => match (shape.member(p), object.get(p)) {
                    (Some(m), Some(x)) => match model.shape(&m.shape) {
                        Some(Shape::Blob) => {
                            use base64::Engine;
                            x.as_str()
                                .and_then(|s| base64::engine::general_purpose::STANDARD.decode(s).ok())
                                .unwrap_or_default()
                        }
                        Some(Shape::String) => x.as_str().unwrap_or_default().as_bytes().to_vec(),
                        _ => serde_json::to_vec(&json::write(model, m, x)).unwrap_or_default(),
                    },
                    _ => Vec::new(),
                },
                None => {
                    let body = body_structure(shape);
                    let located = |k: &str| shape.member(k).is_some_and(|m| m.location.is_some());
                    let object: Map<String, Value> = object
                        .iter()
                        .filter(|(k, _)| !located(k))
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect();
                    let written = json::write_structure(model, &body, &object);
                    serde_json::to_vec(&written).unwrap_or_default()
                }
            }
        }
    };
    Encoded { status, content_type: "application/json", headers, body }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model() -> Model {
        Model::from_json(gantry_test_model().as_bytes()).unwrap()
    }

    fn gantry_test_model() -> String {
        r#"{"metadata": {"protocol": "rest-json", "protocols": ["rest-json"], "apiVersion": "2021-06-30", "signingName": "scheduler"},
            "operations": {
              "GetThing": {"name": "GetThing", "http": {"method": "GET", "requestUri": "/things/{Name}", "responseCode": 200},
                           "input": {"shape": "GetIn"}, "output": {"shape": "GetOut"}},
              "ListThings": {"name": "ListThings", "http": {"method": "GET", "requestUri": "/things", "responseCode": 200},
                           "input": {"shape": "ListIn"}, "output": {"shape": "GetOut"}},
              "MakeThing": {"name": "MakeThing", "http": {"method": "POST", "requestUri": "/things/{Name}", "responseCode": 201},
                           "input": {"shape": "MakeIn"}, "output": {"shape": "GetOut"}},
              "GetObject": {"name": "GetObject", "http": {"method": "GET", "requestUri": "/objects/{Key+}"},
                           "input": {"shape": "ObjIn"}}
            },
            "shapes": {
              "S": {"type": "string"}, "I": {"type": "integer"}, "B": {"type": "boolean"}, "T": {"type": "timestamp"},
              "L": {"type": "list", "member": {"shape": "S"}},
              "GetIn": {"type": "structure", "required": ["Name"], "members": {
                  "Name": {"shape": "S", "location": "uri", "locationName": "Name"},
                  "Token": {"shape": "S", "location": "header", "locationName": "x-token"},
                  "Since": {"shape": "T", "location": "header", "locationName": "x-since"}}},
              "ListIn": {"type": "structure", "members": {
                  "Max": {"shape": "I", "location": "querystring", "locationName": "MaxResults"},
                  "Group": {"shape": "S", "location": "querystring", "locationName": "ScheduleGroup"},
                  "Keys": {"shape": "L", "location": "querystring", "locationName": "TagKeys"},
                  "After": {"shape": "T", "location": "querystring", "locationName": "after"},
                  "On": {"shape": "B", "location": "querystring", "locationName": "on"}}},
              "MakeIn": {"type": "structure", "members": {
                  "Name": {"shape": "S", "location": "uri", "locationName": "Name"},
                  "Count": {"shape": "I"}, "At": {"shape": "T"}}},
              "ObjIn": {"type": "structure", "members": {"Key": {"shape": "S", "location": "uri", "locationName": "Key"}}},
              "GetOut": {"type": "structure", "members": {
                  "Arn": {"shape": "S"}, "ETag": {"shape": "S", "location": "header", "locationName": "ETag"},
                  "When": {"shape": "T"}}}
            }}"#
        .to_string()
    }

    fn req<'a>(
        method: &'a str,
        path: &'a str,
        query: &'a str,
        headers: &'a [(&'a str, &'a [u8])],
        body: &'a [u8],
    ) -> RestRequest<'a> {
        RestRequest { method, path, query, headers, body }
    }

    #[test]
    fn routes_by_method_and_template_and_reads_labels_query_headers_and_body() {
        let m = model();
        let (op, labels) = operation(&m, "GET", "/things/a%2Fb").unwrap();
        assert_eq!(op, "GetThing");
        let h: &[(&str, &[u8])] = &[("X-Token", b"t1"), ("x-since", b"Tue, 29 Apr 2014 18:30:38 GMT")];
        let v = parse_request(&m, &op, &labels, &req("GET", "/things/a%2Fb", "", h, b"")).unwrap();
        assert_eq!(v, serde_json::json!({"Name": "a/b", "Token": "t1", "Since": 1398796238}));
        let (op, labels) = operation(&m, "GET", "/things").unwrap();
        assert_eq!(op, "ListThings");
        let q = "MaxResults=5&ScheduleGroup=g%20x&TagKeys=a&TagKeys=b&after=2014-04-29T18%3A30%3A38Z&on=true";
        let v = parse_request(&m, &op, &labels, &req("GET", "/things", q, &[], b"")).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"Max": 5, "Group": "g x", "Keys": ["a", "b"], "After": 1398796238, "On": true})
        );
        let (op, labels) = operation(&m, "POST", "/things/x").unwrap();
        let v =
            parse_request(&m, &op, &labels, &req("POST", "/things/x", "", &[], br#"{"Count": 2, "At": 10}"#))
                .unwrap();
        assert_eq!(v, serde_json::json!({"Name": "x", "Count": 2, "At": 10}));
        let (op, labels) = operation(&m, "GET", "/objects/a/b/c").unwrap();
        assert_eq!((op.as_str(), labels), ("GetObject", vec![("Key".to_string(), "a/b/c".to_string())]));
        assert!(matches!(operation(&m, "PUT", "/things/x"), Err(ProtocolError::UnknownOperation(_))));
        assert!(operation(&m, "GET", "/nothing").is_err());
        let e = parse_request(&m, "ListThings", &[], &req("GET", "/things", "MaxResults=x", &[], b""))
            .unwrap_err();
        assert_eq!(e.to_string(), "Max: expected an integer, found \"x\"");
        assert!(parse_request(&m, "MakeThing", &[], &req("POST", "/things/x", "", &[], b"{")).is_err());
    }

    #[test]
    fn writes_headers_status_and_body() {
        let m = model();
        let out = serialize_response(
            &m,
            "MakeThing",
            &serde_json::json!({"Arn": "a", "ETag": "e1", "When": 1.5}),
            "rid",
        );
        assert_eq!(out.status, 201);
        assert!(out.headers.contains(&("ETag".to_string(), "e1".to_string())));
        let body: Value = serde_json::from_slice(&out.body).unwrap();
        assert_eq!(body, serde_json::json!({"Arn": "a", "When": 1.5}));
    }
}
