//! Gantry's container agent: the capacity layer.
//!
//! An agent runs on each node (a container instance, or a Fargate node that `gantry up`
//! provides). It receives the tasks assigned to its node from the control plane, runs them
//! through a [`runtime::Runtime`], and reports their state back with the agent-facing ECS
//! operations. Its loop is a reconciler: the tasks it should run, against the containers it finds
//! by label, so that after a restart it adopts what is still running instead of starting it again.

pub mod agent;
pub mod aws_profile;
pub mod awslogs;
pub mod client;
pub mod credentials;
pub mod docker;
pub mod exec;
pub mod fake;
pub mod holders;
pub mod metadata;
pub mod node;
pub mod pause;
pub mod routes;
pub mod runtime;
pub mod sim;
pub mod spec;
pub mod stats;
pub mod update;
