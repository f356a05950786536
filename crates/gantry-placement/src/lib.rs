//! Gantry's placement engine: where each task of a RunTask (or a service scale-out) goes, the way
//! ECS decides it, as a pure pipeline over a snapshot of the cluster.
//!
//! 1. Candidates, in an order shuffled by a seed derived from the task and the store revision,
//!    so every decision can be replayed.
//! 2. Feasibility checks, cheapest first (ECS constraints are binding): the instance is ACTIVE
//!    and its agent connected; launch type; CPU, memory and GPU; ports; requiresAttributes;
//!    `distinctInstance`; `memberOf(expression)` in the cluster query language ([`query`]).
//! 3. Rankers for the strategies, in the order given (ECS strategies are best effort): binpack,
//!    spread, random.
//! 4. Select, counting each placed task before placing the next.
//!
//! This crate does no I/O and knows no async runtime: the control plane builds the snapshot,
//! calls [`engine`], and commits the result with compare-and-swap.

pub mod engine;
pub mod query;
pub mod snapshot;
