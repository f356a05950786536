//! The error every AWS service returns, whatever its protocol: a code as that service's SDK
//! names it, who is at fault, and a message naming the bad value. gantry-protocol renders it in
//! the protocol of the request (JSON `__type`, the query protocol's `<Error><Code>`, CBOR).

use crate::EcsError;
use serde_json::{Map, Value};

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct ServiceError {
    /// The error's shape name (`ResourceNotFoundException`), which JSON and CBOR carry in
    /// `__type`. When the model gives that shape an awsQuery code (`error.code`), awsQuery
    /// responses and the `x-amzn-query-error` header of query-compatible services carry that
    /// code instead. A code the model does not define is written as it is.
    pub code: String,
    /// `Sender` (the caller's fault) or `Receiver` (the service's).
    pub sender_fault: bool,
    pub message: String,
    /// The HTTP status (400 for the caller's errors unless the service says otherwise, 500 for
    /// the service's).
    pub status: u16,
    /// Further members of the error shape (in the JSON form), written beside the message.
    pub fields: Map<String, Value>,
}

impl ServiceError {
    /// A caller's error with status 400.
    pub fn sender(code: impl Into<String>, message: impl Into<String>) -> Self {
        ServiceError {
            code: code.into(),
            sender_fault: true,
            message: message.into(),
            status: 400,
            fields: Map::new(),
        }
    }

    /// A service's own failure with status 500.
    pub fn receiver(code: impl Into<String>, message: impl Into<String>) -> Self {
        ServiceError {
            code: code.into(),
            sender_fault: false,
            message: message.into(),
            status: 500,
            fields: Map::new(),
        }
    }

    pub fn with_status(mut self, status: u16) -> Self {
        self.status = status;
        self
    }
}

impl From<EcsError> for ServiceError {
    fn from(e: EcsError) -> Self {
        if e.kind.is_server_fault() {
            ServiceError::receiver(e.kind.name(), e.message)
        } else {
            ServiceError::sender(e.kind.name(), e.message)
        }
    }
}
