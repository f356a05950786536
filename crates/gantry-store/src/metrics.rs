//! The store's metric handles. The registry they are rendered from is not the store's: the
//! binary's `gantry_runtime::Metrics` creates these, registers them, and hands them to the store
//! it opens (the store sits below the runtime, so it gets its handles, never the registry).

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};

/// What the store records. Cloning shares the same series.
#[derive(Debug, Clone)]
pub struct StoreMetrics {
    /// Seconds from the writer taking a group of transactions to answering them: applying them,
    /// writing SQLite and its fsync, the mirror and the broadcast to watches.
    pub commit_duration: Histogram,
    /// Transactions in one group commit (one fsync for all of them).
    pub txns_per_commit: Histogram,
    /// Keys written or deleted by one group commit.
    pub keys_per_commit: Histogram,
    /// etcd: transactions sent (each a raft round), by outcome: committed, failed on the
    /// caller's compare, or failed only because a counter it adds to had moved (sent again).
    pub etcd_committed: Counter,
    pub etcd_compare_failed: Counter,
    pub etcd_counter_moved: Counter,
}

impl Default for StoreMetrics {
    fn default() -> Self {
        StoreMetrics {
            // 50 µs to ~1.6 s.
            commit_duration: Histogram::new(exponential_buckets(0.000_05, 2.0, 16)),
            // 1 to 512 (the group's limit).
            txns_per_commit: Histogram::new(exponential_buckets(1.0, 2.0, 10)),
            // 1 to 16,384.
            keys_per_commit: Histogram::new(exponential_buckets(1.0, 2.0, 15)),
            etcd_committed: Counter::default(),
            etcd_compare_failed: Counter::default(),
            etcd_counter_moved: Counter::default(),
        }
    }
}
