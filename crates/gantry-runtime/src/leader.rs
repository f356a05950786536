//! The leadership gate: controllers run only while their process leads.
//!
//! One server per SQLite store leads alone ([`AlwaysLeader`]). Servers sharing an etcd root
//! elect one ([`ElectedLeadership`], following `gantry_store::election`), and fence each term;
//! the controllers do not change.

use gantry_store::election::Fence;
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
    /// The current term's fence, when leadership comes from an election: controllers send their
    /// writes inside it ([`gantry_store::election::fenced`]), so they fail once another server
    /// leads. `None`: nothing to fence (one server per store).
    fn fence(&self) -> Option<Fence> {
        None
    }
}

/// Leadership won in an etcd election ([`gantry_store::election::Campaign`]): leads while the
/// campaign says so, and fences each term. `gantry_leader` follows it.
pub struct ElectedLeadership {
    elected: gantry_store::election::Elected,
    leading: watch::Sender<bool>,
}

impl ElectedLeadership {
    /// Follows `elected` (until the campaign ends), setting `gauge` to 1 while leading and
    /// counting each term won in `elections`.
    pub fn follow(
        elected: gantry_store::election::Elected,
        gauge: prometheus_client::metrics::gauge::Gauge,
        elections: prometheus_client::metrics::counter::Counter,
    ) -> std::sync::Arc<Self> {
        let leading = watch::channel(elected.borrow().is_some()).0;
        let this = std::sync::Arc::new(ElectedLeadership { elected: elected.clone(), leading });
        let weak = std::sync::Arc::downgrade(&this);
        let mut rx = elected;
        tokio::spawn(async move {
            loop {
                let now = *rx.borrow_and_update();
                let Some(this) = weak.upgrade() else { return };
                gauge.set(i64::from(now.is_some()));
                let changed =
                    this.leading.send_if_modified(|v| std::mem::replace(v, now.is_some()) != now.is_some());
                if changed && now.is_some() {
                    elections.inc();
                }
                drop(this);
                if rx.changed().await.is_err() {
                    if let Some(this) = weak.upgrade() {
                        this.leading.send_replace(false);
                    }
                    gauge.set(0);
                    return;
                }
            }
        });
        this
    }
}

impl Leadership for ElectedLeadership {
    fn is_leader(&self) -> bool {
        self.elected.borrow().is_some()
    }
    fn watch(&self) -> watch::Receiver<bool> {
        self.leading.subscribe()
    }
    fn fence(&self) -> Option<Fence> {
        *self.elected.borrow()
    }
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
