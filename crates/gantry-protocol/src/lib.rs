//! AWS's wire protocols, server side: awsJson1_0, awsJson1_1, awsQuery, Smithy RPC v2 CBOR and
//! restJson1 ([`rest`]: operations found by their `http` traits), driven by botocore's service
//! models.
//!
//! The front door hands this crate the pieces of a request (content type, `X-Amz-Target`,
//! `smithy-protocol` header, path, body bytes); it answers which protocol and operation they are,
//! the request in the in-memory form, and encoded responses and errors. The in-memory form of a
//! request or response is a `serde_json::Value` in awsJson's own wire form for that shape, keyed
//! by member name: timestamps are epoch seconds (numbers), blobs base64 strings, non-finite floats
//! the strings `"NaN"`, `"Infinity"` and `"-Infinity"`, everything else plain JSON. So the JSON
//! protocols are nearly the identity, and awsQuery and CBOR convert to and from that form. This
//! crate must not know HTTP (no http, hyper or axum types), services, storage or SigV4.

pub mod cbor;
mod error;
mod json;
pub mod model;
mod query;
pub mod rest;
pub mod time;

pub use error::{ProtocolError, ServiceError};
pub use model::{Model, ModelError};
pub use query::action as query_action;

use serde_json::{Map, Value};

/// Largest JSON 1.0/1.1 request body accepted: 10 MiB. Services enforce their own, smaller
/// per-operation limits (PutLogEvents' 1 MiB batch) on top of it.
pub const MAX_JSON_BODY: usize = 10 << 20;
/// Largest RPC v2 CBOR request body accepted: 10 MiB, as for JSON.
pub const MAX_CBOR_BODY: usize = 10 << 20;
/// Largest awsQuery form body accepted: 1 MiB (CloudWatch's PutMetricData allows 1 MB; IAM and
/// STS requests are a few KiB).
pub const MAX_QUERY_BODY: usize = 1 << 20;

/// One of the wire protocols Gantry serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protocol {
    AwsJson1_0,
    AwsJson1_1,
    AwsQuery,
    RpcV2Cbor,
    /// botocore's `rest-json`: see [`rest`].
    RestJson1,
}

/// botocore's order of preference when a model lists several protocols
/// (`botocore.utils.PRIORITY_ORDERED_SUPPORTED_PROTOCOLS`).
const BOTOCORE_PRIORITY: [&str; 6] = ["json", "rest-json", "rest-xml", "smithy-rpc-v2-cbor", "query", "ec2"];

impl Protocol {
    /// The protocol botocore would use for a model: the first of its priority order that the
    /// model lists (and that Gantry serves).
    pub fn pick(model: &Model) -> Option<Protocol> {
        BOTOCORE_PRIORITY
            .iter()
            .find(|p| model.metadata.protocols.iter().any(|m| m == *p))
            .and_then(|p| Protocol::from_model_name(model, p))
    }

    fn from_model_name(model: &Model, name: &str) -> Option<Protocol> {
        match name {
            "json" if model.metadata.json_version.as_deref() == Some("1.1") => Some(Protocol::AwsJson1_1),
            "json" => Some(Protocol::AwsJson1_0),
            "query" => Some(Protocol::AwsQuery),
            "smithy-rpc-v2-cbor" => Some(Protocol::RpcV2Cbor),
            "rest-json" => Some(Protocol::RestJson1),
            _ => None,
        }
    }

    /// The name a botocore model gives the protocol in `metadata.protocols`.
    pub fn model_name(self) -> &'static str {
        match self {
            Protocol::AwsJson1_0 | Protocol::AwsJson1_1 => "json",
            Protocol::AwsQuery => "query",
            Protocol::RpcV2Cbor => "smithy-rpc-v2-cbor",
            Protocol::RestJson1 => "rest-json",
        }
    }

    /// The protocol a request is in, from its headers and path alone: `smithy-protocol:
    /// rpc-v2-cbor` (or a CBOR body to `/service/.../operation/...`), `application/x-amz-json-1.0`
    /// or `-1.1`, or a form body. `None` when they say nothing; see [`Protocol::accept`].
    pub fn detect(
        content_type: Option<&str>,
        target: Option<&str>,
        smithy_protocol: Option<&str>,
        path: &str,
    ) -> Option<Protocol> {
        if smithy_protocol.is_some_and(|p| p.trim().eq_ignore_ascii_case("rpc-v2-cbor")) {
            return Some(Protocol::RpcV2Cbor);
        }
        // The JSON protocols' types exactly as every SDK sends them: one comparison (this runs
        // on every request, twice), before the general reading below.
        match content_type {
            Some("application/x-amz-json-1.1") => return Some(Protocol::AwsJson1_1),
            Some("application/x-amz-json-1.0") => return Some(Protocol::AwsJson1_0),
            _ => {}
        }
        // The media type, compared without case (and without allocating: this runs on every
        // request, twice).
        let media = content_type?.split(';').next().unwrap_or("").trim();
        let is = |m: &str| media.eq_ignore_ascii_case(m);
        if is("application/x-amz-json-1.1") {
            Some(Protocol::AwsJson1_1)
        } else if is("application/x-amz-json-1.0") {
            Some(Protocol::AwsJson1_0)
        } else if is("application/x-www-form-urlencoded") && target.is_none() {
            Some(Protocol::AwsQuery)
        } else if is("application/cbor") && path.contains("/service/") {
            Some(Protocol::RpcV2Cbor)
        } else {
            None
        }
    }

    /// The protocol a request to this service is in, if the service speaks it. A JSON service
    /// accepts both JSON versions (and answers in the one it was asked in); a request with an
    /// `X-Amz-Target` and no JSON content type is taken as the model's JSON version; one with
    /// neither target nor content type is awsQuery (a GET with a query string) when the service
    /// speaks it.
    pub fn accept(
        model: &Model,
        content_type: Option<&str>,
        target: Option<&str>,
        smithy_protocol: Option<&str>,
        path: &str,
    ) -> Result<Protocol, ProtocolError> {
        // A REST service is told by its paths, not its headers (a GET has no content type).
        if model.metadata.protocols.iter().all(|p| p == "rest-json") && !model.metadata.protocols.is_empty() {
            return Ok(Protocol::RestJson1);
        }
        let detected = Protocol::detect(content_type, target, smithy_protocol, path).or_else(|| {
            if target.is_some() {
                Protocol::from_model_name(model, "json")
            } else if content_type.is_none() {
                Some(Protocol::AwsQuery)
            } else {
                None
            }
        });
        match detected {
            Some(p) if model.metadata.protocols.iter().any(|m| m == p.model_name()) => Ok(p),
            _ => Err(ProtocolError::UnsupportedProtocol(format!(
                "this service speaks {:?}; the request's content type {:?}, target {:?} and path {path:?} match none of them",
                model.metadata.protocols,
                content_type.unwrap_or(""),
                target.unwrap_or(""),
            ))),
        }
    }

    /// The largest request body the protocol accepts.
    pub fn max_body(self) -> usize {
        match self {
            Protocol::AwsJson1_0 | Protocol::AwsJson1_1 | Protocol::RestJson1 => MAX_JSON_BODY,
            Protocol::AwsQuery => MAX_QUERY_BODY,
            Protocol::RpcV2Cbor => MAX_CBOR_BODY,
        }
    }

    /// The content type of the protocol's responses.
    pub fn content_type(self) -> &'static str {
        match self {
            Protocol::AwsJson1_0 => "application/x-amz-json-1.0",
            Protocol::AwsJson1_1 => "application/x-amz-json-1.1",
            Protocol::AwsQuery => "text/xml",
            Protocol::RpcV2Cbor => "application/cbor",
            Protocol::RestJson1 => "application/json",
        }
    }
}

/// An encoded response: what the front door writes back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encoded {
    pub status: u16,
    pub content_type: &'static str,
    /// Headers besides `Content-Type` (`x-amzn-RequestId`, `smithy-protocol`,
    /// `x-amzn-query-error`, ...).
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// The operation a request names: `X-Amz-Target: <targetPrefix>.<Op>` (JSON), the form's
/// `Action` (awsQuery; pass the URL's query string as `body` for a GET), or the path
/// `/service/<targetPrefix>/operation/<Op>` (RPC v2 CBOR). The name is checked against the model.
pub fn operation_name(
    protocol: Protocol,
    model: &Model,
    target: Option<&str>,
    path: &str,
    body: &[u8],
) -> Result<String, ProtocolError> {
    let name = match protocol {
        Protocol::AwsJson1_0 | Protocol::AwsJson1_1 => {
            let target = target.ok_or_else(|| {
                ProtocolError::MissingOperation("the X-Amz-Target header is missing".into())
            })?;
            let (prefix, op) = target.rsplit_once('.').ok_or_else(|| {
                ProtocolError::MissingOperation(format!(
                    "X-Amz-Target {target:?} is not <service>.<operation>"
                ))
            })?;
            if model.metadata.target_prefix.as_deref().is_some_and(|p| p != prefix) {
                return Err(ProtocolError::UnknownOperation(target.to_string()));
            }
            op.to_string()
        }
        Protocol::AwsQuery => match query::action(body) {
            (Some(action), _) if !action.is_empty() => action,
            _ => return Err(ProtocolError::MissingOperation("the request has no Action parameter".into())),
        },
        Protocol::RpcV2Cbor => {
            let rest = path.rfind("/service/").map(|i| &path[i + "/service/".len()..]);
            let Some((service, op)) = rest.and_then(|r| r.split_once("/operation/")) else {
                return Err(ProtocolError::MissingOperation(format!(
                    "path {path:?} is not /service/<service>/operation/<operation>"
                )));
            };
            if model.metadata.target_prefix.as_deref().is_some_and(|p| p != service) || op.contains('/') {
                return Err(ProtocolError::UnknownOperation(format!("{service}/{op}")));
            }
            op.to_string()
        }
        Protocol::RestJson1 => {
            return Err(ProtocolError::MissingOperation(
                "a restJson1 operation is found by its method and path: see rest::operation".into(),
            ));
        }
    };
    if model.operation(&name).is_none() {
        return Err(ProtocolError::UnknownOperation(name));
    }
    Ok(name)
}

/// Reads a request body into the in-memory form of the operation's input (an object).
pub fn parse_request(
    protocol: Protocol,
    model: &Model,
    op: &str,
    body: &[u8],
) -> Result<Value, ProtocolError> {
    if body.len() > protocol.max_body() {
        return Err(ProtocolError::BodyTooLarge { size: body.len(), limit: protocol.max_body() });
    }
    let operation = model.operation(op).ok_or_else(|| ProtocolError::UnknownOperation(op.to_string()))?;
    let input = operation.input.as_deref().and_then(|s| model.structure(s));
    match protocol {
        Protocol::AwsJson1_0 | Protocol::AwsJson1_1 => {
            if body.iter().all(u8::is_ascii_whitespace) {
                return Ok(Value::Object(Map::new()));
            }
            let v: Value = serde_json::from_slice(body)
                .map_err(|e| ProtocolError::Malformed(format!("request body is not valid JSON: {e}")))?;
            match input {
                Some(shape) => {
                    Ok(Value::Object(json::read_structure(model, json::Wire::Json, shape, v, "")?))
                }
                None if v.is_object() => Ok(Value::Object(Map::new())),
                None => Err(ProtocolError::invalid("", format!("expected a JSON object, found {v}"))),
            }
        }
        Protocol::AwsQuery => query::read_request(model, input, body),
        Protocol::RpcV2Cbor => cbor::read_request(model, input, body),
        // The body alone (no URI, query or headers): rest::parse_request reads the whole request.
        Protocol::RestJson1 => {
            let req = rest::RestRequest { method: "", path: "", query: "", headers: &[], body };
            rest::parse_request(model, op, &[], &req)
        }
    }
}

fn request_id_header(request_id: &str) -> (String, String) {
    ("x-amzn-RequestId".to_string(), request_id.to_string())
}

/// Encodes an operation's output (in the in-memory form) with status 200.
pub fn serialize_response(
    protocol: Protocol,
    model: &Model,
    op: &str,
    v: &Value,
    request_id: &str,
) -> Encoded {
    let operation = model.operation(op);
    let output = operation.and_then(|o| o.output.as_deref()).and_then(|s| model.structure(s));
    let mut headers = vec![request_id_header(request_id)];
    let body = match protocol {
        Protocol::AwsJson1_0 | Protocol::AwsJson1_1 => {
            let object = match (output, v) {
                (Some(shape), Value::Object(object)) => json::write_structure(model, shape, object),
                _ => Map::new(),
            };
            serde_json::to_vec(&object).expect("a JSON map always serializes")
        }
        Protocol::AwsQuery => query::write_response(model, op, operation, v, request_id).into_bytes(),
        Protocol::RpcV2Cbor => {
            headers.push(("smithy-protocol".to_string(), "rpc-v2-cbor".to_string()));
            cbor::write_structure(model, output, v)
        }
        Protocol::RestJson1 => return rest::serialize_response(model, op, v, request_id),
    };
    Encoded { status: 200, content_type: protocol.content_type(), headers, body }
}

/// Encodes a service error:
/// - awsJson: `{"__type": "<Shape>", "message": "..."}` (or `Message` when the error shape names
///   its member so), with `x-amzn-ErrorType`;
/// - awsQuery: `<ErrorResponse><Error><Type>Sender|Receiver</Type><Code/><Message/></Error>
///   <RequestId/></ErrorResponse>` with the shape's awsQuery code;
/// - RPC v2 CBOR: a map with `__type` and the message;
/// - query-compatible JSON and CBOR services add `x-amzn-query-error: <Code>;Sender|Receiver`.
pub fn serialize_error(protocol: Protocol, model: &Model, err: &ServiceError, request_id: &str) -> Encoded {
    let shape = model.error_shape(&err.code);
    let type_name = shape.map(|(name, _)| name).unwrap_or(&err.code);
    let query_code =
        shape.and_then(|(_, s)| s.error.as_ref().and_then(|e| e.code.as_deref())).unwrap_or(type_name);
    let fault = if err.sender_fault { "Sender" } else { "Receiver" };
    let mut headers = vec![request_id_header(request_id)];
    if model.metadata.query_compatible && protocol != Protocol::AwsQuery {
        headers.push(("x-amzn-query-error".to_string(), format!("{query_code};{fault}")));
    }
    let structure = shape.map(|(_, s)| s);
    let message_key = match structure {
        Some(s) if s.member("Message").is_some() => "Message",
        _ => "message",
    };
    // `__type` and the message first, then the error shape's other members.
    let mut head = vec![("__type".to_string(), Value::String(type_name.to_string()))];
    if !err.message.is_empty() {
        head.push((message_key.to_string(), Value::String(err.message.clone())));
    }
    let is_head = |k: &str| k == "__type" || k == message_key;
    let mut status = err.status;
    let body = match protocol {
        // restJson1: the code in `x-amzn-ErrorType`, the shape's members in the body, the
        // shape's HTTP status.
        Protocol::RestJson1 => {
            headers.push(("x-amzn-ErrorType".to_string(), type_name.to_string()));
            if let Some(code) = structure.and_then(|s| s.error.as_ref()).and_then(|e| e.http_status_code) {
                status = code;
            }
            let rest = match structure {
                Some(s) => json::write_structure(model, s, &err.fields),
                None => err.fields.clone(),
            };
            let mut object = Map::new();
            if !err.message.is_empty() {
                object.insert(message_key.to_string(), Value::String(err.message.clone()));
            }
            object.extend(rest.into_iter().filter(|(k, _)| !is_head(k)));
            serde_json::to_vec(&object).expect("a JSON map always serializes")
        }
        Protocol::AwsJson1_0 | Protocol::AwsJson1_1 => {
            headers.push(("x-amzn-ErrorType".to_string(), type_name.to_string()));
            let rest = match structure {
                Some(s) => json::write_structure(model, s, &err.fields),
                None => err.fields.clone(),
            };
            let mut object: Map<String, Value> = head.into_iter().collect();
            object.extend(rest.into_iter().filter(|(k, _)| !is_head(k)));
            serde_json::to_vec(&object).expect("a JSON map always serializes")
        }
        Protocol::AwsQuery => {
            let mut rest = err.fields.clone();
            rest.remove("message");
            rest.remove("Message");
            query::write_error(
                model,
                query_code,
                err.sender_fault,
                &err.message,
                structure,
                &rest,
                request_id,
            )
            .into_bytes()
        }
        Protocol::RpcV2Cbor => {
            headers.push(("smithy-protocol".to_string(), "rpc-v2-cbor".to_string()));
            let rest = match structure {
                Some(s) => cbor::structure(model, s, &err.fields),
                None => cbor::generic(&Value::Object(err.fields.clone())),
            };
            let mut map: Vec<_> =
                head.iter().map(|(k, v)| (ciborium::Value::Text(k.clone()), cbor::generic(v))).collect();
            if let ciborium::Value::Map(rest) = rest {
                map.extend(rest.into_iter().filter(|(k, _)| !k.as_text().is_some_and(is_head)));
            }
            cbor::encode(&ciborium::Value::Map(map))
        }
    };
    Encoded { status, content_type: protocol.content_type(), headers, body }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model(protocols: &str) -> Model {
        let doc = format!(
            r#"{{"metadata": {{"protocol": "json", "protocols": {protocols}, "jsonVersion": "1.0",
                 "targetPrefix": "GraniteServiceVersion20100801", "apiVersion": "2010-08-01", "awsQueryCompatible": {{}}}},
               "operations": {{"ListMetrics": {{"name": "ListMetrics", "input": {{"shape": "In"}}, "errors": [{{"shape": "Bad"}}]}}}},
               "shapes": {{"In": {{"type": "structure", "members": {{"Namespace": {{"shape": "S"}}}}}},
                          "Bad": {{"type": "structure", "members": {{"Message": {{"shape": "S"}}}},
                                  "error": {{"code": "InvalidParameterValue", "httpStatusCode": 400, "senderFault": true}}, "exception": true}},
                          "S": {{"type": "string"}}}}}}"#
        );
        Model::from_json(doc.as_bytes()).unwrap()
    }

    /// The media type is read without case, parameters and surrounding space, as HTTP says.
    #[test]
    fn content_types_are_compared_without_case() {
        let d = |ct: &str, target: Option<&str>, path: &str| Protocol::detect(Some(ct), target, None, path);
        assert_eq!(d("Application/X-Amz-JSON-1.1; charset=utf-8", None, "/"), Some(Protocol::AwsJson1_1));
        assert_eq!(d(" application/x-amz-json-1.0 ", None, "/"), Some(Protocol::AwsJson1_0));
        assert_eq!(d("APPLICATION/X-WWW-FORM-URLENCODED", None, "/"), Some(Protocol::AwsQuery));
        assert_eq!(d("application/x-www-form-urlencoded", Some("T.Op"), "/"), None);
        assert_eq!(d("Application/CBOR", None, "/service/S/operation/O"), Some(Protocol::RpcV2Cbor));
        assert_eq!(d("application/cbor", None, "/"), None);
        assert_eq!(d("application/json", None, "/"), None);
        assert_eq!(Protocol::detect(None, Some("T.Op"), None, "/"), None);
        assert_eq!(Protocol::detect(None, None, Some(" RPC-V2-CBOR"), "/"), Some(Protocol::RpcV2Cbor));
    }

    #[test]
    fn picks_botocores_order_and_accepts_every_listed_protocol() {
        let m = model(r#"["query", "smithy-rpc-v2-cbor", "json"]"#);
        assert_eq!(Protocol::pick(&m), Some(Protocol::AwsJson1_0));
        let m2 = model(r#"["query", "smithy-rpc-v2-cbor"]"#);
        assert_eq!(Protocol::pick(&m2), Some(Protocol::RpcV2Cbor));
        let p =
            Protocol::accept(&m, Some("application/x-www-form-urlencoded; charset=utf-8"), None, None, "/");
        assert_eq!(p, Ok(Protocol::AwsQuery));
        let path = "/service/GraniteServiceVersion20100801/operation/ListMetrics";
        assert_eq!(
            Protocol::accept(&m, Some("application/cbor"), None, Some("rpc-v2-cbor"), path),
            Ok(Protocol::RpcV2Cbor)
        );
        assert_eq!(operation_name(Protocol::RpcV2Cbor, &m, None, path, b"").unwrap(), "ListMetrics");
        let target = Some("GraniteServiceVersion20100801.ListMetrics");
        assert_eq!(Protocol::accept(&m, None, target, None, "/"), Ok(Protocol::AwsJson1_0));
        assert!(Protocol::accept(&m2, Some("application/x-amz-json-1.1"), target, None, "/").is_err());
        let err =
            operation_name(Protocol::AwsJson1_0, &m, Some("GraniteServiceVersion20100801.Nope"), "/", b"");
        assert_eq!(err, Err(ProtocolError::UnknownOperation("Nope".into())));
        let err = operation_name(Protocol::AwsQuery, &m, None, "/", b"Version=1").unwrap_err();
        assert_eq!(err.code(Protocol::AwsQuery), "MissingAction");
    }

    #[test]
    fn query_compatible_errors_carry_the_query_code() {
        let m = model(r#"["json", "query"]"#);
        let err = ServiceError::sender("Bad", "no such namespace");
        let json = serialize_error(Protocol::AwsJson1_0, &m, &err, "rid");
        let body: Value = serde_json::from_slice(&json.body).unwrap();
        assert_eq!(body, serde_json::json!({"__type": "Bad", "Message": "no such namespace"}));
        assert!(json.headers.contains(&("x-amzn-query-error".into(), "InvalidParameterValue;Sender".into())));
        let xml = String::from_utf8(serialize_error(Protocol::AwsQuery, &m, &err, "rid").body).unwrap();
        assert!(
            xml.contains("<Code>InvalidParameterValue</Code><Message>no such namespace</Message>"),
            "{xml}"
        );
    }

    #[test]
    fn oversized_and_malformed_bodies_are_protocol_errors() {
        let m = model(r#"["json"]"#);
        let big = vec![b' '; MAX_JSON_BODY + 1];
        let err = parse_request(Protocol::AwsJson1_0, &m, "ListMetrics", &big).unwrap_err();
        assert_eq!(err.status(), 413);
        let err = parse_request(Protocol::AwsJson1_0, &m, "ListMetrics", b"{\"Namespace\": ").unwrap_err();
        assert_eq!(err.code(Protocol::AwsJson1_0), "SerializationException");
        let err = parse_request(Protocol::AwsJson1_0, &m, "ListMetrics", br#"{"Namespace": 5}"#).unwrap_err();
        assert_eq!(err.to_string(), "Namespace: expected a string, found a number 5");
    }
}
