//! gantry-agent's integration tests, in one binary.

mod control;
mod docker;
mod reconcile;
mod update;
