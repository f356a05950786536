//! The error every AWS service returns, whatever its protocol: a code as that service's SDK
//! names it, who is at fault, and a message naming the bad value. The front door renders it in
//! the protocol of the request (JSON `__type`, the query protocol's `<Error><Code>`, CBOR).

use crate::{EcsError, ErrorKind};

/// Whether the caller (Sender, HTTP 4xx) or the service (Receiver, HTTP 5xx) is at fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    Sender,
    Receiver,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct ServiceError {
    /// The error code (`ClusterNotFoundException`, `InvalidClientTokenId`, ...).
    pub code: String,
    pub fault: Fault,
    /// The HTTP status (400 unless the service says otherwise, 500 for Receiver faults).
    pub status: u16,
    pub message: String,
}

impl ServiceError {
    /// A caller's error with HTTP status 400.
    pub fn sender(code: impl Into<String>, message: impl Into<String>) -> Self {
        ServiceError { code: code.into(), fault: Fault::Sender, status: 400, message: message.into() }
    }
    /// A service fault with HTTP status 500.
    pub fn receiver(code: impl Into<String>, message: impl Into<String>) -> Self {
        ServiceError { code: code.into(), fault: Fault::Receiver, status: 500, message: message.into() }
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
            let status = match e.kind {
                ErrorKind::AccessDeniedException => 400,
                _ => 400,
            };
            ServiceError::sender(e.kind.name(), e.message).with_status(status)
        }
    }
}
