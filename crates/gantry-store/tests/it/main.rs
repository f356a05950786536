//! gantry-store's integration tests, one binary: the store contract on both backends, the etcd
//! backend's restarts and elections, and linearizability on a 3-member etcd with its checker.

mod checker;
mod conformance;
mod etcd;
mod linearizability;
