//! The wire shapes of the AWS APIs Gantry serves, one module per service, generated from
//! botocore's service models by `tools/gen-model.py` (driven by its one list of services) and
//! never edited by hand.
//!
//! Every request, response and resource structure of the operations Gantry speaks is here,
//! spelled as AWS spells it on the wire, in the JSON protocols' forms (timestamps as epoch
//! seconds, blobs as base64). Each module also carries its trimmed botocore model (`MODEL`), which
//! gantry-protocol reads to speak the service's other protocols. This crate knows nothing of
//! HTTP, storage or validation: required members are plain fields so that deserialization rejects
//! a request without them, enum-typed members are strings that each service validates with its
//! own messages. ECS's shapes are also at the crate root, where its code has always found them.
//!
//! ECS's structures also write themselves as JSON ([`json::WriteJson`]), byte for byte as serde
//! does but without its call per member: the front door answers ECS with it.

pub mod json;
#[rustfmt::skip]
pub mod ecs;
#[rustfmt::skip]
pub mod sts;
#[rustfmt::skip]
pub mod iam;
#[rustfmt::skip]
pub mod secretsmanager;
#[rustfmt::skip]
pub mod ssm;
#[rustfmt::skip]
pub mod elbv2;
#[rustfmt::skip]
pub mod acm;
#[rustfmt::skip]
pub mod logs;
#[rustfmt::skip]
pub mod cloudwatch;
#[rustfmt::skip]
pub mod appautoscaling;
#[rustfmt::skip]
pub mod events;
#[rustfmt::skip]
pub mod scheduler;
#[rustfmt::skip]
pub mod autoscaling;

pub use ecs::*;
