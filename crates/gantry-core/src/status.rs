//! The statuses of ECS resources Gantry decides on, as enums: compare and index through them,
//! never through string literals. The wire shapes (`gantry-model`), and the stored records that
//! are still those shapes, keep ECS's strings; `gantry-ecs` converts at one place (its
//! `status.rs`). A stored record with a type of its own (`ServiceDeploymentRecord`, a task
//! record's `StoredTask`) holds the enums, serialized as ECS's strings.
//!
//! Gantry writes only these values (a status is set from an enum, and a status given in a request
//! is parsed before it is used), so every stored status parses. One policy holds for a value
//! Gantry did not write: a stored record with a type of its own reads its status strictly (the
//! enum's `Deserialize`), so the value is a failed read that names it, reported with the
//! record's key; a status absent from the JSON takes the record's documented default. Where a
//! wire string is parsed ([`parse`](ServiceStatus::parse)) it is `None`, never a panic.

/// A status enum with ECS's (or another AWS API's) names: `as_str`, `parse`, `ALL`, `Display`,
/// serialized as the names. Service crates use it for their own statuses too.
#[macro_export]
macro_rules! status_enum {
    ($(#[$doc:meta])* $name:ident { $($variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, ::serde::Serialize, ::serde::Deserialize)]
        pub enum $name {
            $(#[serde(rename = $text)] $variant),+
        }

        impl $name {
            /// Every status, in ECS's documented order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// ECS's name of the status.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text),+
                }
            }

            /// The status ECS names `s` (exactly, upper case), if any.
            pub fn parse(s: &str) -> Option<$name> {
                Self::ALL.iter().copied().find(|t| t.as_str() == s)
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

status_enum! {
    /// A container instance's `status`.
    InstanceStatus {
        Active => "ACTIVE",
        Draining => "DRAINING",
        Registering => "REGISTERING",
        Deregistering => "DEREGISTERING",
        RegistrationFailed => "REGISTRATION_FAILED",
        Inactive => "INACTIVE",
    }
}

status_enum! {
    /// A service's `status`.
    ServiceStatus {
        Active => "ACTIVE",
        Draining => "DRAINING",
        Inactive => "INACTIVE",
    }
}

status_enum! {
    /// A cluster's `status`.
    ClusterStatus {
        Active => "ACTIVE",
        Provisioning => "PROVISIONING",
        Deprovisioning => "DEPROVISIONING",
        Failed => "FAILED",
        Inactive => "INACTIVE",
    }
}

status_enum! {
    /// A capacity provider's `status`.
    CapacityProviderStatus {
        Active => "ACTIVE",
        Inactive => "INACTIVE",
    }
}

status_enum! {
    /// A task definition's `status`.
    TaskDefinitionStatus {
        Active => "ACTIVE",
        Inactive => "INACTIVE",
        DeleteInProgress => "DELETE_IN_PROGRESS",
    }
}

status_enum! {
    /// A daemon task definition's `status`.
    DaemonTaskDefinitionStatus {
        Active => "ACTIVE",
        DeleteInProgress => "DELETE_IN_PROGRESS",
        Deleted => "DELETED",
    }
}

status_enum! {
    /// A daemon's `status`.
    DaemonStatus {
        Active => "ACTIVE",
        DeleteInProgress => "DELETE_IN_PROGRESS",
    }
}

status_enum! {
    /// A daemon deployment's `status`.
    DaemonDeploymentStatus {
        Pending => "PENDING",
        Successful => "SUCCESSFUL",
        Stopped => "STOPPED",
        StopRequested => "STOP_REQUESTED",
        InProgress => "IN_PROGRESS",
        RollbackInProgress => "ROLLBACK_IN_PROGRESS",
        RollbackSuccessful => "ROLLBACK_SUCCESSFUL",
        RollbackFailed => "ROLLBACK_FAILED",
    }
}

status_enum! {
    /// A daemon deployment's circuit breaker's or alarms' `status`.
    DaemonMonitorStatus {
        Triggered => "TRIGGERED",
        Monitoring => "MONITORING",
        MonitoringComplete => "MONITORING_COMPLETE",
        Disabled => "DISABLED",
    }
}

status_enum! {
    /// A gateway's `status`.
    GatewayStatus {
        Active => "ACTIVE",
        UpdateInProgress => "UPDATE_IN_PROGRESS",
        UpdateComplete => "UPDATE_COMPLETE",
        UpdateFailed => "UPDATE_FAILED",
        Deleted => "DELETED",
    }
}

status_enum! {
    /// A gateway's association with a cluster: its `status`.
    GatewayAssociationStatus {
        Active => "ACTIVE",
        Disassociating => "DISASSOCIATING",
        Inactive => "INACTIVE",
    }
}

status_enum! {
    /// A gateway route's `status` (Gantry's routes are made at once: ACTIVE).
    GatewayRouteStatus {
        Active => "ACTIVE",
        CreateInProgress => "CREATE_IN_PROGRESS",
        CreateFailed => "CREATE_FAILED",
        UpdateInProgress => "UPDATE_IN_PROGRESS",
        UpdateFailed => "UPDATE_FAILED",
        DeleteInProgress => "DELETE_IN_PROGRESS",
        DeleteFailed => "DELETE_FAILED",
    }
}

status_enum! {
    /// An Express service's `statusCode`.
    ExpressServiceStatus {
        Active => "ACTIVE",
        Draining => "DRAINING",
        Inactive => "INACTIVE",
    }
}

status_enum! {
    /// A service deployment's (`Deployment`, in DescribeServices' `deployments`) `status`.
    DeploymentStatus {
        Primary => "PRIMARY",
        Active => "ACTIVE",
        Inactive => "INACTIVE",
    }
}

status_enum! {
    /// A deployment's `rolloutState`.
    RolloutState {
        Completed => "COMPLETED",
        Failed => "FAILED",
        InProgress => "IN_PROGRESS",
    }
}

status_enum! {
    /// A service deployment's (ListServiceDeployments, DescribeServiceDeployments) `status`.
    ServiceDeploymentStatus {
        Pending => "PENDING",
        Successful => "SUCCESSFUL",
        Stopped => "STOPPED",
        StopRequested => "STOP_REQUESTED",
        InProgress => "IN_PROGRESS",
        RollbackRequested => "ROLLBACK_REQUESTED",
        RollbackInProgress => "ROLLBACK_IN_PROGRESS",
        RollbackSuccessful => "ROLLBACK_SUCCESSFUL",
        RollbackFailed => "ROLLBACK_FAILED",
    }
}

status_enum! {
    /// A service deployment's circuit breaker's or alarms' `status`.
    MonitorStatus {
        Triggered => "TRIGGERED",
        Monitoring => "MONITORING",
        MonitoringComplete => "MONITORING_COMPLETE",
        Disabled => "DISABLED",
    }
}

status_enum! {
    /// Where a traffic-shifting deployment is: a `ServiceDeploymentLifecycleStage`, or
    /// PRE_PRODUCTION_TRAFFIC_SHIFT (a hook stage a deployment shows as POST_TEST_TRAFFIC_SHIFT).
    DeploymentStage {
        ReconcileService => "RECONCILE_SERVICE",
        PreScaleUp => "PRE_SCALE_UP",
        ScaleUp => "SCALE_UP",
        PostScaleUp => "POST_SCALE_UP",
        TestTrafficShift => "TEST_TRAFFIC_SHIFT",
        PostTestTrafficShift => "POST_TEST_TRAFFIC_SHIFT",
        PreProductionTrafficShift => "PRE_PRODUCTION_TRAFFIC_SHIFT",
        ProductionTrafficShift => "PRODUCTION_TRAFFIC_SHIFT",
        PostProductionTrafficShift => "POST_PRODUCTION_TRAFFIC_SHIFT",
        BakeTime => "BAKE_TIME",
        CleanUp => "CLEAN_UP",
    }
}

status_enum! {
    /// The stage a deployment lifecycle hook runs at (`DeploymentLifecycleHookStage`).
    DeploymentLifecycleHookStage {
        ReconcileService => "RECONCILE_SERVICE",
        PreScaleUp => "PRE_SCALE_UP",
        PostScaleUp => "POST_SCALE_UP",
        TestTrafficShift => "TEST_TRAFFIC_SHIFT",
        PostTestTrafficShift => "POST_TEST_TRAFFIC_SHIFT",
        PreProductionTrafficShift => "PRE_PRODUCTION_TRAFFIC_SHIFT",
        ProductionTrafficShift => "PRODUCTION_TRAFFIC_SHIFT",
        PostProductionTrafficShift => "POST_PRODUCTION_TRAFFIC_SHIFT",
    }
}

impl From<DeploymentLifecycleHookStage> for DeploymentStage {
    fn from(s: DeploymentLifecycleHookStage) -> Self {
        use DeploymentLifecycleHookStage as H;
        match s {
            H::ReconcileService => DeploymentStage::ReconcileService,
            H::PreScaleUp => DeploymentStage::PreScaleUp,
            H::PostScaleUp => DeploymentStage::PostScaleUp,
            H::TestTrafficShift => DeploymentStage::TestTrafficShift,
            H::PostTestTrafficShift => DeploymentStage::PostTestTrafficShift,
            H::PreProductionTrafficShift => DeploymentStage::PreProductionTrafficShift,
            H::ProductionTrafficShift => DeploymentStage::ProductionTrafficShift,
            H::PostProductionTrafficShift => DeploymentStage::PostProductionTrafficShift,
        }
    }
}

status_enum! {
    /// A deployment lifecycle hook's `status` (`DeploymentLifecycleHookStatus`).
    DeploymentLifecycleHookStatus {
        AwaitingAction => "AWAITING_ACTION",
        InProgress => "IN_PROGRESS",
        Succeeded => "SUCCEEDED",
        Failed => "FAILED",
        TimedOut => "TIMED_OUT",
    }
}

status_enum! {
    /// A task set's `status`.
    TaskSetStatus {
        Primary => "PRIMARY",
        Active => "ACTIVE",
        Draining => "DRAINING",
    }
}

status_enum! {
    /// A task set's `stabilityStatus`.
    StabilityStatus {
        SteadyState => "STEADY_STATE",
        Stabilizing => "STABILIZING",
    }
}

status_enum! {
    /// An attachment's (a task's ENI, a Service Connect proxy, ...) `status`.
    AttachmentStatus {
        Precreated => "PRECREATED",
        Created => "CREATED",
        Attaching => "ATTACHING",
        Attached => "ATTACHED",
        Detaching => "DETACHING",
        Detached => "DETACHED",
        Deleted => "DELETED",
        Failed => "FAILED",
    }
}

status_enum! {
    /// A CloudWatch alarm's `StateValue`: CloudWatch keeps it, ECS's deployment alarms and
    /// Application Auto Scaling's policies read it through ports.
    AlarmState {
        Ok => "OK",
        Alarm => "ALARM",
        InsufficientData => "INSUFFICIENT_DATA",
    }
}

status_enum! {
    /// A task's or container's `healthStatus`.
    HealthStatus {
        Healthy => "HEALTHY",
        Unhealthy => "UNHEALTHY",
        Unknown => "UNKNOWN",
    }
}

status_enum! {
    /// A managed agent's (ECS Exec's `ExecuteCommandAgent`) `lastStatus`.
    ManagedAgentStatus {
        Pending => "PENDING",
        Running => "RUNNING",
        Stopped => "STOPPED",
    }
}

status_enum! {
    /// A capacity provider's `updateStatus`.
    CapacityProviderUpdateStatus {
        CreateInProgress => "CREATE_IN_PROGRESS",
        CreateComplete => "CREATE_COMPLETE",
        CreateFailed => "CREATE_FAILED",
        DeleteInProgress => "DELETE_IN_PROGRESS",
        DeleteComplete => "DELETE_COMPLETE",
        DeleteFailed => "DELETE_FAILED",
        UpdateInProgress => "UPDATE_IN_PROGRESS",
        UpdateComplete => "UPDATE_COMPLETE",
        UpdateFailed => "UPDATE_FAILED",
    }
}

status_enum! {
    /// A container instance's `agentUpdateStatus`.
    AgentUpdateStatus {
        Pending => "PENDING",
        Staging => "STAGING",
        Staged => "STAGED",
        Updating => "UPDATING",
        Updated => "UPDATED",
        Failed => "FAILED",
    }
}

impl ServiceDeploymentStatus {
    /// SUCCESSFUL, STOPPED, ROLLBACK_SUCCESSFUL or ROLLBACK_FAILED: nothing moves it any more.
    pub const fn is_finished(self) -> bool {
        matches!(
            self,
            ServiceDeploymentStatus::Successful
                | ServiceDeploymentStatus::Stopped
                | ServiceDeploymentStatus::RollbackSuccessful
                | ServiceDeploymentStatus::RollbackFailed
        )
    }

    /// ROLLBACK_REQUESTED or ROLLBACK_IN_PROGRESS.
    pub const fn is_rolling_back(self) -> bool {
        matches!(
            self,
            ServiceDeploymentStatus::RollbackRequested | ServiceDeploymentStatus::RollbackInProgress
        )
    }
}

impl InstanceStatus {
    /// ACTIVE or DRAINING: what ECS counts as registered.
    pub const REGISTERED: [InstanceStatus; 2] = [InstanceStatus::Active, InstanceStatus::Draining];
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_and_serde_agree() {
        for s in InstanceStatus::ALL {
            assert_eq!(InstanceStatus::parse(s.as_str()), Some(*s));
            assert_eq!(serde_json::to_string(s).unwrap(), format!("\"{s}\""));
        }
        for s in ServiceStatus::ALL {
            assert_eq!(ServiceStatus::parse(s.as_str()), Some(*s));
            let back: ServiceStatus = serde_json::from_str(&format!("\"{s}\"")).unwrap();
            assert_eq!(back, *s);
        }
        for s in ClusterStatus::ALL {
            assert_eq!(ClusterStatus::parse(s.as_str()), Some(*s));
        }
        for s in TaskDefinitionStatus::ALL {
            assert_eq!(TaskDefinitionStatus::parse(s.as_str()), Some(*s));
        }
        for s in CapacityProviderStatus::ALL {
            assert_eq!(CapacityProviderStatus::parse(s.as_str()), Some(*s));
        }
        assert_eq!(TaskDefinitionStatus::DeleteInProgress.as_str(), "DELETE_IN_PROGRESS");
        assert_eq!(InstanceStatus::RegistrationFailed.as_str(), "REGISTRATION_FAILED");
        assert_eq!(InstanceStatus::parse("active"), None);
        assert_eq!(ServiceStatus::parse("PRIMARY"), None);
        for s in DeploymentStatus::ALL {
            assert_eq!(DeploymentStatus::parse(s.as_str()), Some(*s));
        }
        for s in ServiceDeploymentStatus::ALL {
            assert_eq!(ServiceDeploymentStatus::parse(s.as_str()), Some(*s));
        }
        for s in AttachmentStatus::ALL {
            assert_eq!(AttachmentStatus::parse(s.as_str()), Some(*s));
        }
        let finished: Vec<_> = ServiceDeploymentStatus::ALL.iter().filter(|s| s.is_finished()).collect();
        assert_eq!(finished.len(), 4);
        assert!(!ServiceDeploymentStatus::StopRequested.is_finished());
        assert!(ServiceDeploymentStatus::RollbackRequested.is_rolling_back());
        assert!(!ServiceDeploymentStatus::RollbackFailed.is_rolling_back());
        assert_eq!(TaskSetStatus::parse("DRAINING"), Some(TaskSetStatus::Draining));
        assert_eq!(StabilityStatus::SteadyState.as_str(), "STEADY_STATE");
        assert_eq!(RolloutState::parse("IN_PROGRESS"), Some(RolloutState::InProgress));
        assert_eq!(MonitorStatus::MonitoringComplete.as_str(), "MONITORING_COMPLETE");
        for s in CapacityProviderUpdateStatus::ALL {
            assert_eq!(CapacityProviderUpdateStatus::parse(s.as_str()), Some(*s));
        }
        for s in AgentUpdateStatus::ALL {
            assert_eq!(AgentUpdateStatus::parse(s.as_str()), Some(*s));
        }
        assert_eq!(HealthStatus::parse("UNHEALTHY"), Some(HealthStatus::Unhealthy));
        assert_eq!(ManagedAgentStatus::parse("RUNNING"), Some(ManagedAgentStatus::Running));
        assert_eq!(HealthStatus::parse("healthy"), None);
    }
}
