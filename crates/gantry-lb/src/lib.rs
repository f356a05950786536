//! The load balancer's data plane: the ports ELBv2's listeners bind, the requests and
//! connections they carry to targets, the health checks of target groups, and the metrics
//! CloudWatch shows for them.
//!
//! A capacity-layer component: it knows nothing of ELBv2's API or records. The binary turns
//! them into a [`Config`] and hands it to [`LoadBalancer::apply`], which reconfigures in place:
//! ports are bound and unbound, rules, targets and weights change for the next request while
//! connections stay open, and deregistered targets drain. [`LoadBalancer::target_health`] is
//! what DescribeTargetHealth reads; metrics go to a [`gantry_ports::MetricSink`] once a period.
//! Time comes from an injected [`Clock`] (health transitions, slow start, cookies); delays are
//! tokio's timers.

pub mod config;
pub mod health;
pub mod metrics;
pub mod rules;

mod body;
mod fast;
mod group;
mod http;
mod listener;
mod pool;
mod ports;
mod prober;
mod table;
mod tcp;
mod tls;

pub use config::Config;
pub use health::{Reason, State, TargetHealth};
pub use tls::TlsError;

use crate::config::{Action, Listener};
use crate::group::Group;
use crate::metrics::{Emitter, LbCounters, lb_dimension};
use crate::table::{Act, CompiledRule, ForwardPlan, Slot, Table, Weighted};
use arc_swap::ArcSwap;
use gantry_core::{Clock, IdGen};
use gantry_ports::MetricSink;
use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;
use tokio::task::JoinHandle;

/// How the data plane is set up.
#[derive(Debug, Clone)]
pub struct Options {
    /// Where listeners without an address of their own bind (loopback by default).
    pub bind_address: IpAddr,
    /// How often metrics go to the sink (CloudWatch's period for ELB metrics: 60 s).
    pub metrics_period: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options { bind_address: IpAddr::V4(Ipv4Addr::LOCALHOST), metrics_period: Duration::from_secs(60) }
    }
}

/// Why a configuration was not applied (nothing of it was).
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("listener {listener}: cannot bind {address}: {error}")]
    Bind { listener: String, address: SocketAddr, error: std::io::Error },
    #[error("listeners {first} and {second} both use {address}")]
    DuplicatePort { first: String, second: String, address: SocketAddr },
    #[error("listener {listener}: target group {target_group} is not in the configuration")]
    UnknownTargetGroup { listener: String, target_group: String },
    #[error("listener {listener}: {source}")]
    Tls { listener: String, source: TlsError },
    #[error("listener {listener}: a {protocol} listener forwards to exactly one target group")]
    NotForwarding { listener: String, protocol: &'static str },
}

impl ApplyError {
    /// The listener the configuration could not serve (of two on one address, the second).
    pub fn listener(&self) -> &str {
        match self {
            ApplyError::Bind { listener, .. }
            | ApplyError::UnknownTargetGroup { listener, .. }
            | ApplyError::Tls { listener, .. }
            | ApplyError::NotForwarding { listener, .. } => listener,
            ApplyError::DuplicatePort { second, .. } => second,
        }
    }
}

/// The data plane. Cloning shares it; dropping the last clone stops every listener and prober.
#[derive(Clone)]
pub struct LoadBalancer {
    inner: Arc<Inner>,
}

struct Inner {
    options: Options,
    shared: Arc<http::Shared>,
    sink: Arc<dyn MetricSink>,
    tls_client: Arc<rustls::ClientConfig>,
    state: Mutex<LbState>,
}

#[derive(Default)]
struct LbState {
    groups: HashMap<String, GroupEntry>,
    /// By bound address.
    bound: HashMap<SocketAddr, Bound>,
    /// Listener ARN → bound address.
    listeners: HashMap<String, SocketAddr>,
    /// Load balancer ARN → its counters.
    counters: HashMap<String, Arc<LbCounters>>,
    _flusher: Option<Abort>,
}

struct GroupEntry {
    group: Arc<Group>,
    /// The prober and the health check it runs.
    prober: Option<(config::HealthCheck, Abort)>,
}

struct Bound {
    slot: Arc<Slot>,
    _accept: Abort,
}

/// A task aborted when dropped.
struct Abort(JoinHandle<()>);

impl Drop for Abort {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl LoadBalancer {
    /// A data plane serving nothing yet. Must be called within a tokio runtime (it starts the
    /// metrics flusher).
    pub fn new(options: Options, clock: Arc<dyn Clock>, ids: &dyn IdGen, sink: Arc<dyn MetricSink>) -> Self {
        let shared = Arc::new(http::Shared::new(clock, ids.next_u128() as u64));
        let period = options.metrics_period;
        let inner = Arc::new(Inner {
            options,
            shared,
            sink,
            tls_client: tls::insecure_client(),
            state: Mutex::new(LbState::default()),
        });
        let weak = Arc::downgrade(&inner);
        let flusher = tokio::spawn(flush_every(weak, period));
        inner.state().unwrap_or_else(|e| e.into_inner())._flusher = Some(Abort(flusher));
        LoadBalancer { inner }
    }

    /// Serves `config` from now on. Sockets are bound and certificates loaded first; if any of
    /// that fails, nothing changes. Then target groups take their new targets (the ones no
    /// longer listed start draining), listeners' tables are swapped (requests already in flight
    /// finish on the old one), new ports are served and ports no longer listed are closed
    /// (their open connections carry on).
    pub fn apply(&self, config: &Config) -> Result<(), ApplyError> {
        let inner = &self.inner;
        let mut state = inner.state().unwrap_or_else(|e| e.into_inner());
        let clock = inner.shared.clock.clone();

        // Everything new is built aside first.
        let groups: HashMap<&str, Arc<Group>> = config
            .target_groups
            .iter()
            .map(|tg| {
                let g = state.groups.get(&tg.arn).map(|e| e.group.clone());
                (tg.arn.as_str(), g.unwrap_or_else(|| Arc::new(Group::new(tg, clock.clone()))))
            })
            .collect();
        let mut counters: HashMap<String, Arc<LbCounters>> = HashMap::new();
        let mut tables = Vec::with_capacity(config.listeners.len());
        let mut addresses: HashMap<SocketAddr, &str> = HashMap::new();
        let mut fresh: HashMap<SocketAddr, tokio::net::TcpListener> = HashMap::new();
        for l in &config.listeners {
            let address = SocketAddr::new(l.address.unwrap_or(inner.options.bind_address), l.port);
            if let Some(first) = addresses.insert(address, &l.arn) {
                return Err(ApplyError::DuplicatePort {
                    first: first.to_string(),
                    second: l.arn.clone(),
                    address,
                });
            }
            let lb = counters
                .entry(l.load_balancer_arn.clone())
                .or_insert_with(|| {
                    state.counters.get(&l.load_balancer_arn).cloned().unwrap_or_else(|| {
                        Arc::new(LbCounters {
                            network: l.load_balancer_arn.contains(":loadbalancer/net/"),
                            ..LbCounters::default()
                        })
                    })
                })
                .clone();
            tables.push((l, address, compile(l, &groups, lb)?));
            if !state.bound.contains_key(&address) {
                let bound = listener::bind(address).map_err(|error| ApplyError::Bind {
                    listener: l.arn.clone(),
                    address,
                    error,
                })?;
                fresh.insert(address, bound);
            }
        }

        // Target groups: new targets, draining ones, use, probers.
        let in_use: HashSet<&str> = tables
            .iter()
            .flat_map(|(_, _, t)| t.rules.iter())
            .filter_map(|r| match &r.action {
                Act::Forward(p) => Some(p.groups.iter().map(|w| w.group.arn.as_str())),
                _ => None,
            })
            .flatten()
            .collect();
        let mut entries = HashMap::with_capacity(groups.len());
        for tg in &config.target_groups {
            let group = groups[tg.arn.as_str()].clone();
            let used = in_use.contains(tg.arn.as_str());
            group.reconfigure(tg, used);
            let old = state.groups.remove(&tg.arn).and_then(|e| e.prober);
            let prober = match old {
                Some((check, task)) if used && tg.health_check.enabled && check == tg.health_check => {
                    Some((check, task))
                }
                _ if used && tg.health_check.enabled => {
                    let task = tokio::spawn(prober::run(group.clone(), inner.tls_client.clone()));
                    Some((tg.health_check.clone(), Abort(task)))
                }
                _ => None,
            };
            entries.insert(tg.arn.clone(), GroupEntry { group, prober });
        }
        state.groups = entries; // groups no longer listed: their probers are aborted here

        // Listeners: swap tables, serve new ports, close old ones.
        let mut bound = HashMap::with_capacity(tables.len());
        state.listeners.clear();
        for (l, address, table) in tables {
            state.listeners.insert(l.arn.clone(), address);
            let entry = match (state.bound.remove(&address), fresh.remove(&address)) {
                (Some(b), _) => {
                    b.slot.table.store(Arc::new(table));
                    b
                }
                (None, Some(socket)) => {
                    let slot = Arc::new(Slot { table: ArcSwap::from_pointee(table) });
                    let task =
                        tokio::spawn(listener::accept_loop(socket, slot.clone(), inner.shared.clone()));
                    tracing::info!(listener = %l.arn, %address, protocol = l.protocol.as_str(), "listening");
                    Bound { slot, _accept: Abort(task) }
                }
                (None, None) => continue, // unreachable: bound above
            };
            bound.insert(address, entry);
        }
        state.bound = bound;
        // Load balancers that are gone publish their last period now.
        let gone: Vec<(String, Arc<LbCounters>)> =
            state.counters.drain().filter(|(arn, _)| !counters.contains_key(arn)).collect();
        state.counters = counters;
        drop(state);
        if !gone.is_empty() {
            inner.publish(gone);
        }
        Ok(())
    }

    /// DescribeTargetHealth's view of a target group: its registered and draining targets.
    /// `None` when the group is not in the configuration.
    pub fn target_health(&self, target_group_arn: &str) -> Option<Vec<TargetHealth>> {
        let state = self.inner.state().unwrap_or_else(|e| e.into_inner());
        state.groups.get(target_group_arn).map(|e| e.group.health_report())
    }

    fn group(&self, arn: &str) -> Option<Arc<Group>> {
        let state = self.inner.state().unwrap_or_else(|e| e.into_inner());
        state.groups.get(arn).map(|e| e.group.clone())
    }

    /// Where a listener is bound.
    pub fn local_addr(&self, listener_arn: &str) -> Option<SocketAddr> {
        let state = self.inner.state().unwrap_or_else(|e| e.into_inner());
        state.listeners.get(listener_arn).copied()
    }

    /// Sends the period's metrics to the sink now (also done every `metrics_period`).
    pub fn flush_metrics(&self) {
        let all: Vec<(String, Arc<LbCounters>)> = {
            let state = self.inner.state().unwrap_or_else(|e| e.into_inner());
            state.counters.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
        };
        self.inner.publish(all);
    }
}

impl Inner {
    fn state(&self) -> std::sync::LockResult<std::sync::MutexGuard<'_, LbState>> {
        self.state.lock()
    }

    fn publish(&self, lbs: Vec<(String, Arc<LbCounters>)>) {
        let mut out = Vec::new();
        let mut e = Emitter { now: self.shared.clock.now(), out: &mut out };
        for (arn, c) in &lbs {
            let dim = lb_dimension(arn);
            e.load_balancer(c.network, &dim, &c.own);
            let groups = c.groups.lock().unwrap_or_else(|e| e.into_inner()).clone();
            for (g, gc) in &groups {
                e.target_group(c.network, &dim, g, gc);
            }
        }
        if !out.is_empty() {
            self.sink.put(out);
        }
    }
}

async fn flush_every(inner: Weak<Inner>, period: Duration) {
    let mut ticks = tokio::time::interval(period.max(Duration::from_millis(100)));
    ticks.tick().await;
    loop {
        ticks.tick().await;
        let Some(inner) = inner.upgrade() else { return };
        LoadBalancer { inner }.flush_metrics();
    }
}

/// A listener's table: its rules by priority, the default rule last, target groups resolved.
fn compile(
    l: &Listener,
    groups: &HashMap<&str, Arc<Group>>,
    counters: Arc<LbCounters>,
) -> Result<Table, ApplyError> {
    let mut rules: Vec<&config::Rule> = l.rules.iter().collect();
    rules.sort_by_key(|r| r.priority);
    let mut compiled = Vec::with_capacity(rules.len() + 1);
    let act = |actions: &[Action]| -> Result<Option<Act>, ApplyError> {
        let Some(last) = actions.last() else { return Ok(None) };
        Ok(Some(match last {
            Action::Forward(f) => {
                let mut ws = Vec::with_capacity(f.target_groups.len());
                for (arn, weight) in &f.target_groups {
                    let group = groups.get(arn.as_str()).ok_or_else(|| ApplyError::UnknownTargetGroup {
                        listener: l.arn.clone(),
                        target_group: arn.clone(),
                    })?;
                    ws.push(Weighted {
                        group: group.clone(),
                        weight: *weight,
                        counters: counters.for_group(group),
                    });
                }
                Act::Forward(Arc::new(ForwardPlan::new(ws, f.stickiness)))
            }
            Action::Redirect(r) => Act::Redirect(r.clone()),
            Action::FixedResponse(f) => Act::Fixed(f.clone()),
        }))
    };
    if l.protocol.is_http() {
        for r in rules {
            if let Some(action) = act(&r.actions)? {
                compiled.push(CompiledRule { conditions: r.conditions.clone(), action });
            }
        }
    }
    let default = act(&l.default_actions)?;
    if !l.protocol.is_http() && !matches!(&default, Some(Act::Forward(p)) if !p.groups.is_empty()) {
        return Err(ApplyError::NotForwarding { listener: l.arn.clone(), protocol: l.protocol.as_str() });
    }
    if let Some(action) = default {
        compiled.push(CompiledRule { conditions: Vec::new(), action });
    }
    let tls = if l.protocol.is_tls() {
        let alpn: &[&[u8]] = match l.protocol {
            config::Protocol::Https if l.http2 => &[b"h2", b"http/1.1"],
            config::Protocol::Https => &[b"http/1.1"],
            _ => &[],
        };
        Some(
            tls::server_config(&l.certificates, alpn)
                .map_err(|source| ApplyError::Tls { listener: l.arn.clone(), source })?,
        )
    } else {
        None
    };
    Ok(Table {
        protocol: l.protocol,
        port: l.port,
        rules: compiled,
        tls,
        idle_timeout: l.idle_timeout,
        xff: l.xff,
        counters,
    })
}
