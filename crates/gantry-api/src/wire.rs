//! The JSON 1.1 wire: the target header, request bodies into generated shapes, and responses.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use gantry_core::{EcsError, ErrorKind};
use serde::Serialize;
use serde::de::DeserializeOwned;

pub const TARGET_PREFIX: &str = "AmazonEC2ContainerServiceV20141113.";
const CONTENT_TYPE: &str = "application/x-amz-json-1.1";

/// The operation named by `X-Amz-Target`.
pub fn operation(target: Option<&str>) -> Result<&str, EcsError> {
    let target = target.unwrap_or("");
    match target.strip_prefix(TARGET_PREFIX) {
        Some(op) if !op.is_empty() => Ok(op),
        _ => Err(unknown_operation(target)),
    }
}

pub fn unknown_operation(target: &str) -> EcsError {
    EcsError::new(ErrorKind::UnknownOperationException, format!("Unknown operation: '{target}'"))
}

/// Parses a request body into `T`. An empty body is `{}`. A body that is not JSON, or has a
/// member of the wrong type, is a SerializationException naming where; a missing required member
/// is an InvalidParameterException naming it (ECS's own wording for the few it words itself).
pub fn parse<T: DeserializeOwned>(op: &str, body: &[u8]) -> Result<T, EcsError> {
    let body: &[u8] = if body.iter().all(u8::is_ascii_whitespace) { b"{}" } else { body };
    // Input shapes are JSON objects; serde would otherwise read an array positionally.
    if body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(EcsError::new(
            ErrorKind::SerializationException,
            "Start of list found where not expected: the request body must be a JSON object.",
        ));
    }
    // Most requests are well formed: parse them directly, and only a failed parse again with
    // the path tracked (which costs about as much as the parse) to say where it failed.
    if let Ok(value) = serde_json::from_slice::<T>(body) {
        return Ok(value);
    }
    let mut de = serde_json::Deserializer::from_slice(body);
    let value: T = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if inner.is_syntax() || inner.is_eof() {
            return EcsError::new(
                ErrorKind::SerializationException,
                format!("The request body is not valid JSON: {inner}"),
            );
        }
        let msg = inner.to_string();
        if let Some(field) = missing_field(&msg) {
            let full =
                if path == "." || path.is_empty() { field.to_string() } else { format!("{path}.{field}") };
            return missing(op, &full);
        }
        let at = if path == "." { "the request".to_string() } else { format!("'{path}'") };
        EcsError::new(
            ErrorKind::SerializationException,
            format!("Unexpected value at {at}: {}", strip_position(&msg)),
        )
    })?;
    de.end().map_err(|e| {
        EcsError::new(ErrorKind::SerializationException, format!("The request body is not valid JSON: {e}"))
    })?;
    Ok(value)
}

fn missing_field(msg: &str) -> Option<&str> {
    let rest = msg.strip_prefix("missing field `")?;
    rest.split('`').next()
}

fn strip_position(msg: &str) -> &str {
    msg.split(" at line ").next().unwrap_or(msg)
}

/// The error for a missing required member.
fn missing(op: &str, field: &str) -> EcsError {
    match (op, field) {
        ("RegisterTaskDefinition", "family") => EcsError::client("Family can not be blank."),
        ("RegisterTaskDefinition", "containerDefinitions") => {
            EcsError::client("Container list cannot be empty.")
        }
        ("DescribeTasks", "tasks") => EcsError::invalid("Tasks cannot be empty."),
        ("DescribeContainerInstances", "containerInstances") => {
            EcsError::invalid("Container Instances cannot be empty.")
        }
        _ => EcsError::invalid(format!("Missing required parameter: '{field}' must be specified.")),
    }
}

/// The request-ID header every AWS answer carries (a name, not a `&str` parsed on each insert).
pub(crate) const X_AMZN_REQUESTID: header::HeaderName = header::HeaderName::from_static("x-amzn-requestid");

fn base<B>(status: StatusCode, body: B, request_id: &str) -> axum::http::Response<B> {
    // Built as it is sent: `(status, body).into_response()` would first set a content type of
    // its own for this one to replace.
    let mut r = axum::http::Response::new(body);
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
    if let Ok(v) = HeaderValue::from_str(request_id) {
        h.insert(X_AMZN_REQUESTID, v);
    }
    r
}

pub fn ok_response(body: Vec<u8>, request_id: &str) -> Response {
    base(StatusCode::OK, axum::body::Body::from(body), request_id)
}

/// [`ok_response`] as the front door sends it: the written bytes as they are.
pub(crate) fn ok_answer(body: Vec<u8>, request_id: &str) -> crate::reply::Answer {
    base(StatusCode::OK, crate::reply::Reply::Written(Some(body)), request_id)
}

/// Serializes a response shape.
pub fn render<T: Serialize>(value: &T) -> Result<Vec<u8>, EcsError> {
    // Most answers are a few hundred bytes: one allocation instead of growing from nothing.
    let mut out = Vec::with_capacity(1024);
    serde_json::to_writer(&mut out, value)
        .map_err(|e| EcsError::server(format!("The response could not be rendered: {e}")))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use gantry_model::{DescribeTaskDefinitionRequest, RegisterTaskDefinitionRequest};

    #[test]
    fn parses_and_types() {
        let r: DescribeTaskDefinitionRequest =
            parse("DescribeTaskDefinition", br#"{"taskDefinition":"web:1","include":["TAGS"]}"#).unwrap();
        assert_eq!(r.task_definition, "web:1");
        assert_eq!(r.include, Some(vec!["TAGS".to_string()]));
    }

    #[test]
    fn errors_name_the_problem() {
        let cases: &[(&str, &[u8], ErrorKind, &str)] = &[
            ("DescribeTaskDefinition", b"{not json", ErrorKind::SerializationException, "not valid JSON"),
            (
                "DescribeTaskDefinition",
                br#"{"taskDefinition":"a"} trailing"#,
                ErrorKind::SerializationException,
                "not valid JSON",
            ),
            ("DescribeTaskDefinition", b"[]", ErrorKind::SerializationException, "must be a JSON object"),
            (
                "DescribeTaskDefinition",
                br#"["web:1"]"#,
                ErrorKind::SerializationException,
                "must be a JSON object",
            ),
            ("DescribeTaskDefinition", b"42", ErrorKind::SerializationException, "must be a JSON object"),
            (
                "DescribeTaskDefinition",
                br#"{"taskDefinition": 5}"#,
                ErrorKind::SerializationException,
                "'taskDefinition'",
            ),
            ("DescribeTaskDefinition", b"{}", ErrorKind::InvalidParameterException, "'taskDefinition'"),
            (
                "RegisterTaskDefinition",
                br#"{"containerDefinitions":[]}"#,
                ErrorKind::ClientException,
                "Family can not be blank.",
            ),
            (
                "RegisterTaskDefinition",
                br#"{"family":"a","containerDefinitions":[{"name":"x","cpu":"lots"}]}"#,
                ErrorKind::SerializationException,
                "'containerDefinitions[0].cpu'",
            ),
        ];
        for (op, body, kind, msg) in cases {
            let e = if *op == "RegisterTaskDefinition" {
                parse::<RegisterTaskDefinitionRequest>(op, body).unwrap_err()
            } else {
                parse::<DescribeTaskDefinitionRequest>(op, body).unwrap_err()
            };
            assert_eq!(e.kind, *kind, "{}", String::from_utf8_lossy(body));
            assert!(e.message.contains(msg), "{}: {}", String::from_utf8_lossy(body), e.message);
        }
    }
}
