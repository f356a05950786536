//! gantry-protocol's integration tests, one binary: the official protocol test cases, run in the
//! server's direction.

mod conformance;
mod rest_conformance;
