//! gantry-agent's integration tests, in one binary.

mod docker;
mod reconcile;
mod update;
