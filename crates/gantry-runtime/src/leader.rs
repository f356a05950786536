//! The leadership gate: controllers run only while their process leads.
//!
//! One server per store leads alone ([`AlwaysLeader`]). Several servers sharing etcd will elect
//! one (a lease-backed election implements [`Leadership`]); the controllers do not change.

use tokio::sync::watch;

/// Whether this process may run controllers now, and a way to wait for that to change.
///
/// Guarantees an implementation must keep: [`Leadership::watch`]'s value is what
/// [`Leadership::is_leader`] answers; it changes whenever leadership is gained or lost; and
/// leadership is lost (the value goes `false`) no later than the moment another process may
/// believe it leads (an election steps down before its lease can expire).
pub trait Leadership: Send + Sync + 'static {
    fn is_leader(&self) -> bool;
    /// The leadership state as a watch: `changed()` resolves on every gain or loss.
    fn watch(&self) -> watch::Receiver<bool>;
}

/// Awaits until `rx` says `want`. Returns `false` if the sender is gone first while the state
/// is not `want` (it will never change again).
pub async fn wait_for(rx: &mut watch::Receiver<bool>, want: bool) -> bool {
    rx.wait_for(|v| *v == want).await.is_ok()
}

/// The leader of a one-server deployment: always leads.
#[derive(Debug)]
pub struct AlwaysLeader(watch::Sender<bool>);

impl Default for AlwaysLeader {
    fn default() -> Self {
        AlwaysLeader(watch::channel(true).0)
    }
}

impl Leadership for AlwaysLeader {
    fn is_leader(&self) -> bool {
        true
    }
    fn watch(&self) -> watch::Receiver<bool> {
        self.0.subscribe()
    }
}

/// Leadership set by hand: for tests, and the shape an election fills in.
#[derive(Debug)]
pub struct ManualLeadership(watch::Sender<bool>);

impl ManualLeadership {
    pub fn new(leader: bool) -> Self {
        ManualLeadership(watch::channel(leader).0)
    }

    pub fn set(&self, leader: bool) {
        self.0.send_if_modified(|v| std::mem::replace(v, leader) != leader);
    }
}

impl Leadership for ManualLeadership {
    fn is_leader(&self) -> bool {
        *self.0.borrow()
    }
    fn watch(&self) -> watch::Receiver<bool> {
        self.0.subscribe()
    }
}
