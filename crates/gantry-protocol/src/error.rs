//! The two kinds of failure: a request the protocol cannot read ([`ProtocolError`]) and an error
//! a service answers with ([`ServiceError`]).

use crate::Protocol;
use serde_json::Map;

/// A request body, header or operation name that the protocol cannot read. Every message names
/// the member (as a path like `Tags.member.2.Key` or `tags[1].key`) and the value at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    /// The body is larger than the protocol's limit.
    #[error("request body of {size} bytes is larger than the limit of {limit} bytes")]
    BodyTooLarge { size: usize, limit: usize },
    /// The body is not valid JSON, CBOR or form encoding at all.
    #[error("{0}")]
    Malformed(String),
    /// A member holds a value of the wrong type, or one that its type cannot hold.
    #[error("{path}: {problem}")]
    InvalidValue { path: String, problem: String },
    /// The request names no operation (no `X-Amz-Target`, no `Action`, no RPC v2 path).
    #[error("{0}")]
    MissingOperation(String),
    /// The request names an operation the service does not have.
    #[error("operation {0:?} is not known to this service")]
    UnknownOperation(String),
    /// The request's content type, target or path matches none of the service's protocols.
    #[error("{0}")]
    UnsupportedProtocol(String),
}

impl ProtocolError {
    pub(crate) fn invalid(path: &str, problem: impl Into<String>) -> ProtocolError {
        ProtocolError::InvalidValue {
            path: if path.is_empty() { "request".to_string() } else { path.to_string() },
            problem: problem.into(),
        }
    }

    /// The error code the protocol's SDKs expect for this failure: JSON and CBOR services answer
    /// malformed input with `SerializationException` and unknown operations with
    /// `UnknownOperationException`; awsQuery services use `MalformedQueryString`,
    /// `ValidationError` (a value of the wrong type), `MissingAction` and `InvalidAction`.
    pub fn code(&self, protocol: Protocol) -> &'static str {
        use ProtocolError::*;
        match (protocol, self) {
            (_, BodyTooLarge { .. }) => "RequestEntityTooLarge",
            (Protocol::AwsQuery, Malformed(_)) => "MalformedQueryString",
            (Protocol::AwsQuery, InvalidValue { .. }) => "ValidationError",
            (Protocol::AwsQuery, MissingOperation(_)) => "MissingAction",
            (Protocol::AwsQuery, UnknownOperation(_)) => "InvalidAction",
            (_, Malformed(_) | InvalidValue { .. }) => "SerializationException",
            (_, MissingOperation(_) | UnknownOperation(_)) => "UnknownOperationException",
            (_, UnsupportedProtocol(_)) => "UnknownOperationException",
        }
    }

    /// The HTTP status: 413 for an oversized body, 400 otherwise.
    pub fn status(&self) -> u16 {
        match self {
            ProtocolError::BodyTooLarge { .. } => 413,
            _ => 400,
        }
    }

    /// The error to answer with, in the protocol's terms.
    pub fn to_service_error(&self, protocol: Protocol) -> ServiceError {
        ServiceError {
            code: self.code(protocol).to_string(),
            sender_fault: true,
            message: self.to_string(),
            status: self.status(),
            fields: Map::new(),
        }
    }
}

/// The error a service answers with: gantry-core's, shared by every service crate.
pub use gantry_core::ServiceError;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_follow_each_protocols_sdks() {
        let bad = ProtocolError::invalid("Tags.member.2.Value", "expected a string");
        assert_eq!(bad.code(Protocol::AwsJson1_1), "SerializationException");
        assert_eq!(bad.code(Protocol::RpcV2Cbor), "SerializationException");
        assert_eq!(bad.code(Protocol::AwsQuery), "ValidationError");
        assert_eq!(ProtocolError::Malformed("x".into()).code(Protocol::AwsQuery), "MalformedQueryString");
        let e = ProtocolError::BodyTooLarge { size: 11, limit: 10 }.to_service_error(Protocol::AwsJson1_0);
        assert_eq!((e.status, e.code.as_str()), (413, "RequestEntityTooLarge"));
        assert!(bad.to_string().contains("Tags.member.2.Value"));
    }
}
