//! Gantry's controller runtime, and the metrics registry every part of Gantry records into.
//!
//! A controller ([`Controller`]) keeps something in the store converging: keys of what to look
//! at come from a watch of the store ([`WatchCursor`]), from the reconciler's own requests to be
//! woken, and from a periodic resync; a keyed delay queue ([`WorkQueue`]) deduplicates them and
//! never hands one key to two passes at once; a [`Reconciler`] does one pass and returns an
//! [`Action`]; a [`Backoff`] retries its errors. Controllers run only while the process leads
//! ([`Leadership`]), and stop on [`Shutdown`] once their passes in flight have finished. Time is
//! tokio's clock, so tests run on a paused clock. [`Metrics`] holds every metric family in one
//! registry, created once by the binary and passed down. [`records`] is the record layer the
//! service crates share: records stored with their index rows in one compare-and-swap write.
//!
//! This crate must not know any AWS service's records or rules (it sees keys, events and
//! reconcilers), hold a global registry or global state of any kind, or read the wall clock for
//! decisions (durations it measures are for metrics only).

mod controller;
mod leader;
pub mod metrics;
mod queue;
pub mod records;
mod watch;

pub use controller::{Action, Backoff, Controller, Reconciler, Shutdown, ShutdownTrigger, shutdown};
pub use leader::{AlwaysLeader, ElectedLeadership, Leadership, ManualLeadership};
pub use metrics::Metrics;
pub use queue::{QueueKey, WorkQueue};
pub use watch::{Change, WatchCursor};
