//! gantry-api's integration tests, one binary: deterministic simulations of the control plane
//! with its companion services on one in-memory store and a fixed clock.

mod capacity_sim;
mod daemon_repair;
mod spot_events;
mod support;
