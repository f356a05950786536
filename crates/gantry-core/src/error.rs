//! ECS's error kinds. The API layer turns an [`ErrorKind`] into the `__type` name and the HTTP
//! status in one function; everything below it only picks the kind and writes the message.

use std::fmt;

/// The exceptions Gantry returns, named exactly as ECS (and the AWS query/JSON front door) names
/// them on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    AccessDeniedException,
    AttributeLimitExceededException,
    ClientException,
    ClusterContainsCapacityProviderException,
    ClusterContainsContainerInstancesException,
    ClusterContainsServicesException,
    ClusterContainsTasksException,
    ClusterNotFoundException,
    ConflictException,
    DaemonNotActiveException,
    DaemonNotFoundException,
    GatewayNotFoundException,
    IncompleteSignatureException,
    InvalidParameterException,
    LimitExceededException,
    MissingAuthenticationTokenException,
    MissingVersionException,
    NamespaceNotFoundException,
    NoUpdateAvailableException,
    ResourceInUseException,
    ResourceNotFoundException,
    SerializationException,
    ServerException,
    ServiceNotActiveException,
    ServiceNotFoundException,
    ServiceDeploymentNotFoundException,
    TargetNotConnectedException,
    TargetNotFoundException,
    TaskSetNotFoundException,
    UnknownOperationException,
    UnsupportedFeatureException,
    UpdateInProgressException,
}

impl ErrorKind {
    /// The `__type` of the error body.
    pub fn name(self) -> &'static str {
        use ErrorKind::*;
        match self {
            AccessDeniedException => "AccessDeniedException",
            AttributeLimitExceededException => "AttributeLimitExceededException",
            ClientException => "ClientException",
            ClusterContainsCapacityProviderException => "ClusterContainsCapacityProviderException",
            ClusterContainsContainerInstancesException => "ClusterContainsContainerInstancesException",
            ClusterContainsServicesException => "ClusterContainsServicesException",
            ClusterContainsTasksException => "ClusterContainsTasksException",
            ClusterNotFoundException => "ClusterNotFoundException",
            ConflictException => "ConflictException",
            DaemonNotActiveException => "DaemonNotActiveException",
            DaemonNotFoundException => "DaemonNotFoundException",
            GatewayNotFoundException => "GatewayNotFoundException",
            IncompleteSignatureException => "IncompleteSignatureException",
            InvalidParameterException => "InvalidParameterException",
            LimitExceededException => "LimitExceededException",
            MissingAuthenticationTokenException => "MissingAuthenticationTokenException",
            MissingVersionException => "MissingVersionException",
            NamespaceNotFoundException => "NamespaceNotFoundException",
            NoUpdateAvailableException => "NoUpdateAvailableException",
            ResourceInUseException => "ResourceInUseException",
            ResourceNotFoundException => "ResourceNotFoundException",
            SerializationException => "SerializationException",
            ServerException => "ServerException",
            ServiceNotActiveException => "ServiceNotActiveException",
            ServiceNotFoundException => "ServiceNotFoundException",
            ServiceDeploymentNotFoundException => "ServiceDeploymentNotFoundException",
            TargetNotConnectedException => "TargetNotConnectedException",
            TargetNotFoundException => "TargetNotFoundException",
            TaskSetNotFoundException => "TaskSetNotFoundException",
            UnknownOperationException => "UnknownOperationException",
            UnsupportedFeatureException => "UnsupportedFeatureException",
            UpdateInProgressException => "UpdateInProgressException",
        }
    }

    /// Server-side faults (HTTP 500); everything else is the caller's (HTTP 400).
    pub fn is_server_fault(self) -> bool {
        matches!(self, ErrorKind::ServerException)
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// An error as ECS reports it: a kind and a message that names the offending value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind}: {message}")]
pub struct EcsError {
    pub kind: ErrorKind,
    pub message: String,
}

pub type Result<T, E = EcsError> = std::result::Result<T, E>;

impl EcsError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        EcsError { kind, message: message.into() }
    }
    pub fn client(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::ClientException, message)
    }
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidParameterException, message)
    }
    pub fn server(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::ServerException, message)
    }
    pub fn cluster_not_found() -> Self {
        Self::new(ErrorKind::ClusterNotFoundException, "Cluster not found.")
    }
}
