//! EC2 Auto Scaling's ports: the hosts its groups launch ([`Launcher`], implemented by the
//! binary's launchers: `gantry-sim`, `gantry-local`, `command:NAME`), and what ECS's capacity
//! providers read and do to a group ([`CapacityGroups`], implemented by `gantry-autoscaling`).

pub use crate::lb::PortFuture;

/// One host an Auto Scaling group wants: everything a launcher needs to start a Gantry agent
/// that joins `cluster` as the container instance whose `ec2InstanceId` is `instance_id`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostSpec {
    pub account: String,
    pub region: String,
    /// `i-` and 17 hex digits.
    pub instance_id: String,
    pub group: String,
    /// The launch configuration's ImageId: names the launcher (`gantry-sim`, `gantry-local`,
    /// `command:NAME`).
    pub image_id: String,
    pub instance_type: String,
    pub availability_zone: String,
    /// The cluster named by `ECS_CLUSTER=` in the user data (`default` without one, as the ECS
    /// agent does).
    pub cluster: String,
    /// The user data, decoded (empty when it is not UTF-8 text).
    pub user_data: String,
}

/// Starts and stops hosts. Both calls are idempotent per instance ID: a controller that lost
/// its write after a call makes it again.
pub trait Launcher: Send + Sync {
    /// Starts the host (its agent registers on its own); an error says why it could not start,
    /// in words for the scaling activity's StatusMessage.
    fn launch<'a>(&'a self, spec: &'a HostSpec) -> PortFuture<'a, Result<(), String>>;
    /// Stops the host and deregisters its container instance; a host that is already gone is
    /// success.
    fn terminate<'a>(&'a self, spec: &'a HostSpec) -> PortFuture<'a, Result<(), String>>;
}

/// A launcher that has no hosts to give (until the binary wires real ones).
#[derive(Debug, Default)]
pub struct NoLaunchers;

impl Launcher for NoLaunchers {
    fn launch<'a>(&'a self, spec: &'a HostSpec) -> PortFuture<'a, Result<(), String>> {
        Box::pin(async move { Err(format!("No launcher serves ImageId '{}'.", spec.image_id)) })
    }
    fn terminate<'a>(&'a self, _spec: &'a HostSpec) -> PortFuture<'a, Result<(), String>> {
        Box::pin(async { Ok(()) })
    }
}

/// An instance of a group as ECS's capacity provider sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupInstance {
    pub instance_id: String,
    /// EC2 Auto Scaling's LifecycleState: `Pending`, `InService`, `Terminating`,
    /// `Terminating:Wait`, ...
    pub lifecycle_state: String,
    pub protected_from_scale_in: bool,
    pub instance_type: String,
    /// When the group launched it (milliseconds since the epoch).
    pub launched_at_ms: i64,
}

/// An Auto Scaling group as ECS's capacity provider sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupView {
    pub name: String,
    pub arn: String,
    pub min_size: i32,
    pub max_size: i32,
    pub desired_capacity: i32,
    /// The launch configuration's InstanceType (what a new instance will be).
    pub instance_type: String,
    pub instances: Vec<GroupInstance>,
    /// The names of its lifecycle hooks on `autoscaling:EC2_INSTANCE_TERMINATING`.
    pub termination_hooks: Vec<String>,
}

/// A group ECS owns for an ECS Managed Instances capacity provider: Gantry launches and retires
/// the provider's instances through it, with the same launchers as any group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnedGroup {
    /// The group's (and its launch configuration's) name.
    pub name: String,
    /// The launcher (`gantry-sim`, `gantry-local`, `command:NAME`): the launch configuration's
    /// ImageId.
    pub image_id: String,
    pub instance_type: String,
    /// The cluster its instances join.
    pub cluster: String,
    /// The subnets its instances go in (the group's VPCZoneIdentifier: one zone each).
    pub subnets: Vec<String>,
    pub max_size: i32,
    /// Tags put on the group (and propagated to its instances).
    pub tags: Vec<(String, String)>,
}

/// What ECS's capacity providers read of, and do to, their Auto Scaling groups (as ECS does with
/// the service-linked role): the group, its desired capacity, scale-in protection, and the
/// managed-draining lifecycle hook.
pub trait CapacityGroups: Send + Sync {
    /// Every account and region that has an Auto Scaling group.
    fn scopes(&self) -> Vec<(String, String)>;
    /// The group an ARN (or name) names, in `account` and `region`.
    fn group(&self, account: &str, region: &str, arn_or_name: &str) -> Option<GroupView>;
    /// SetDesiredCapacity, with the cause for the scaling activity.
    fn set_desired<'a>(
        &'a self,
        account: &'a str,
        region: &'a str,
        group: &'a str,
        desired: i32,
        cause: &'a str,
    ) -> PortFuture<'a, Result<(), String>>;
    /// SetDesiredCapacity for a group ECS owns (ECS Managed Instances), naming the instance
    /// type of each instance the raise launches, in order (the launch configuration's type for
    /// any beyond the list). A group that cannot launch other types ignores `types`.
    fn set_desired_types<'a>(
        &'a self,
        account: &'a str,
        region: &'a str,
        group: &'a str,
        desired: i32,
        cause: &'a str,
        types: &'a [String],
    ) -> PortFuture<'a, Result<(), String>> {
        let _ = types;
        self.set_desired(account, region, group, desired, cause)
    }
    /// SetInstanceProtection.
    fn protect<'a>(
        &'a self,
        account: &'a str,
        region: &'a str,
        group: &'a str,
        instance_ids: &'a [String],
        protected: bool,
    ) -> PortFuture<'a, Result<(), String>>;
    /// PutLifecycleHook on `autoscaling:EC2_INSTANCE_TERMINATING` (idempotent).
    fn put_termination_hook<'a>(
        &'a self,
        account: &'a str,
        region: &'a str,
        group: &'a str,
        hook: &'a str,
    ) -> PortFuture<'a, Result<(), String>>;
    /// CompleteLifecycleAction with CONTINUE for an instance waiting on `hook`.
    fn complete<'a>(
        &'a self,
        account: &'a str,
        region: &'a str,
        group: &'a str,
        hook: &'a str,
        instance_id: &'a str,
    ) -> PortFuture<'a, Result<(), String>>;
    /// TerminateInstanceInAutoScalingGroup with ShouldDecrementDesiredCapacity=false: the
    /// instance goes (through the group's termination hooks) and the group launches another in
    /// its place. `cause` ends the scaling activity's Cause ("... in response to CAUSE."). An
    /// instance already terminating, or no longer in the group, is success.
    fn replace_instance<'a>(
        &'a self,
        account: &'a str,
        region: &'a str,
        group: &'a str,
        instance_id: &'a str,
        cause: &'a str,
    ) -> PortFuture<'a, Result<(), String>> {
        let _ = (account, region, group, instance_id, cause);
        Box::pin(async { Err("This Auto Scaling cannot replace instances for ECS.".to_string()) })
    }
    /// Creates the group (and its launch configuration) if it does not exist yet.
    fn ensure_owned<'a>(
        &'a self,
        account: &'a str,
        region: &'a str,
        group: &'a OwnedGroup,
    ) -> PortFuture<'a, Result<(), String>> {
        let _ = (account, region, group);
        Box::pin(async { Err("This Auto Scaling cannot create groups for ECS.".to_string()) })
    }
    /// Deletes an owned group with its instances (ForceDelete) and then its launch
    /// configuration; `Ok(true)` once both are gone.
    fn delete_owned<'a>(
        &'a self,
        account: &'a str,
        region: &'a str,
        group: &'a str,
    ) -> PortFuture<'a, Result<bool, String>> {
        let _ = (account, region, group);
        Box::pin(async { Ok(true) })
    }
}
