//! gantry-ecs's integration tests, in one binary (one link instead of one per file).

mod agents_sim;
mod churn;
mod common;
mod daemons;
mod exec;
mod gateways;
mod gpus;
mod insights;
mod load_balancers;
mod lost_instances;
mod metrics;
mod migration;
mod ops;
mod service_deployments;
mod services;
mod services_sim;
mod spot;
mod tasks;
