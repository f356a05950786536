//! Gantry's domain core: the vocabulary every other crate shares.
//!
//! It holds ECS's error kinds, the account/region scope and ARNs, the injected clock and ID
//! generator, pagination tokens, and the validation rules ECS applies to names, tags, cpu/memory
//! strings and task definitions. It is pure: no I/O, no async runtime, no HTTP, no store. Time and
//! randomness come in through [`Clock`] and [`IdGen`], so every decision can be replayed.

pub mod arn;
pub mod civil;
pub mod daemon;
pub mod ec2;
pub mod error;
pub mod exec;
pub mod page;
pub mod protocol;
pub mod query;
pub mod schedule;
pub mod seal;
pub mod secret;
pub mod service_error;
pub mod status;
pub mod task_status;
pub mod taskdef;
pub mod time;
pub mod validate;

pub use arn::{Arn, Scope};
pub use error::{EcsError, ErrorKind, Result};
pub use seal::Sealer;
pub use secret::{OsSecrets, Secret, SecretGen};
pub use service_error::ServiceError;
pub use status::{
    AgentUpdateStatus, AlarmState, AttachmentStatus, CapacityProviderStatus, CapacityProviderUpdateStatus,
    ClusterStatus, DaemonDeploymentStatus, DaemonMonitorStatus, DaemonStatus, DaemonTaskDefinitionStatus,
    DeploymentLifecycleHookStage, DeploymentLifecycleHookStatus, DeploymentStage, DeploymentStatus,
    ExpressServiceStatus, GatewayAssociationStatus, GatewayRouteStatus, GatewayStatus, HealthStatus,
    InstanceStatus, ManagedAgentStatus, MonitorStatus, RolloutState, ServiceDeploymentStatus, ServiceStatus,
    StabilityStatus, TaskDefinitionStatus, TaskSetStatus,
};
pub use task_status::TaskStatus;
pub use time::{Clock, FixedClock, IdGen, SeededIds, SystemClock, Timestamp, UuidText};
