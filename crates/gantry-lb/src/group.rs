//! A target group at run time: its registered targets with their health and requests in flight,
//! the choice of a target for a request (round robin or least outstanding requests, slow start,
//! stickiness, fail-open), and draining.

use crate::config::{Algorithm, Protocol, Stickiness, Target, TargetGroup};
use crate::health::{Health, State, TargetHealth};
use crate::metrics::tg_dimension;
use arc_swap::ArcSwap;
use gantry_core::Clock;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU8, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::Notify;

/// A target as the data plane tracks it.
#[derive(Debug)]
pub struct Member {
    pub target: Target,
    /// `IP:PORT`, the authority of requests to it.
    pub authority: http::uri::Authority,
    /// What stickiness cookies carry for it.
    pub key: u64,
    in_flight: AtomicUsize,
    /// The state as a byte, read on every request (`health` is the full record).
    status: AtomicU8,
    health: Mutex<Health>,
    /// When it last turned healthy (ms; 0: never), for slow start.
    healthy_since: AtomicI64,
    /// Smooth weighted round robin's running weight, while a target is in slow start.
    current: AtomicI64,
    idle: Notify,
    /// Idle HTTP/1 connections to it (`pool.rs`).
    pub(crate) idle_connections: Mutex<Vec<crate::pool::Sender>>,
    /// Idle HTTP/1 connections of the plain-HTTP fast path (`fast.rs`), bare sockets.
    pub(crate) idle_sockets: Mutex<Vec<tokio::net::TcpStream>>,
    /// When the prober checks it next (`None`: never checked, so at once).
    pub(crate) next_check: Mutex<Option<tokio::time::Instant>>,
}

fn code(state: State) -> u8 {
    state as u8
}

fn routable_code(status: u8) -> bool {
    status == code(State::Healthy) || status == code(State::Unavailable)
}

impl Member {
    fn new(target: Target, group_arn: &str, health: Health) -> Self {
        let key = fnv(&[group_arn.as_bytes(), target.id.as_bytes(), &target.port.to_be_bytes()]);
        let authority = http::uri::Authority::try_from(target.address.to_string().as_str())
            .unwrap_or_else(|_| http::uri::Authority::from_static("0.0.0.0"));
        Member {
            target,
            authority,
            key,
            in_flight: AtomicUsize::new(0),
            status: AtomicU8::new(code(health.state)),
            health: Mutex::new(health),
            healthy_since: AtomicI64::new(0),
            current: AtomicI64::new(0),
            idle: Notify::new(),
            idle_connections: Mutex::new(Vec::new()),
            idle_sockets: Mutex::new(Vec::new()),
            next_check: Mutex::new(None),
        }
    }

    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Relaxed)
    }

    /// Counts a request or connection until the guard is dropped.
    pub fn start(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Relaxed);
        InFlight(self.clone())
    }

    pub(crate) fn health(&self) -> MutexGuard<'_, Health> {
        self.health.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Replaces the health record (and the byte the request path reads).
    pub(crate) fn set_health(&self, health: Health, now_ms: i64) {
        let mut h = self.health();
        self.record_transition(h.state, health.state, now_ms);
        *h = health;
    }

    /// Keeps the byte the request path reads in step after `health` changed in place.
    pub(crate) fn record_transition(&self, before: State, after: State, now_ms: i64) {
        if after == State::Healthy && before != State::Healthy {
            self.healthy_since.store(now_ms, Relaxed);
            self.current.store(0, Relaxed);
        }
        self.status.store(code(after), Relaxed);
    }

    fn draining(&self) -> bool {
        self.status.load(Relaxed) == code(State::Draining)
    }

    /// Waits until nothing is in flight.
    async fn idle(&self) {
        loop {
            let notified = self.idle.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.in_flight.load(Relaxed) == 0 {
                return;
            }
            notified.await;
        }
    }
}

/// A request or connection in flight to a target.
#[derive(Debug)]
pub struct InFlight(Arc<Member>);

impl Drop for InFlight {
    fn drop(&mut self) {
        if self.0.in_flight.fetch_sub(1, Relaxed) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

/// FNV-1a over the parts: stable keys for cookies.
pub fn fnv(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for b in *part {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        h ^= 0xff;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// A target group's settings other than its targets.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    pub protocol: Protocol,
    pub http2: bool,
    pub health_check: crate::config::HealthCheck,
    pub algorithm: Algorithm,
    pub deregistration_delay: Duration,
    pub slow_start: Duration,
    pub stickiness: Option<Stickiness>,
}

impl Settings {
    fn of(tg: &TargetGroup) -> Self {
        Settings {
            protocol: tg.protocol,
            http2: tg.http2,
            health_check: tg.health_check.clone(),
            algorithm: tg.algorithm,
            deregistration_delay: tg.deregistration_delay,
            slow_start: tg.slow_start,
            stickiness: tg.stickiness.clone(),
        }
    }
}

/// A target group.
pub struct Group {
    pub arn: String,
    /// Its key in `AWSALBTG` cookies.
    pub key: u64,
    dimension: String,
    settings: ArcSwap<Settings>,
    /// Registered targets that are not draining: what requests choose from.
    routable: ArcSwap<Vec<Arc<Member>>>,
    /// Registered and draining targets, for health reports and checks.
    members: Mutex<Vec<Arc<Member>>>,
    in_use: AtomicBool,
    rr: AtomicUsize,
    weighted: Mutex<()>,
    clock: Arc<dyn Clock>,
    /// Told when targets are registered, so that the prober checks them at once.
    pub(crate) registered: Notify,
}

impl std::fmt::Debug for Group {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Group").field("arn", &self.arn).finish_non_exhaustive()
    }
}

impl Group {
    pub(crate) fn new(tg: &TargetGroup, clock: Arc<dyn Clock>) -> Self {
        Group {
            arn: tg.arn.clone(),
            key: fnv(&[tg.arn.as_bytes()]),
            dimension: tg_dimension(&tg.arn),
            settings: ArcSwap::from_pointee(Settings::of(tg)),
            routable: ArcSwap::from_pointee(Vec::new()),
            members: Mutex::new(Vec::new()),
            in_use: AtomicBool::new(false),
            rr: AtomicUsize::new(0),
            weighted: Mutex::new(()),
            clock,
            registered: Notify::new(),
        }
    }

    pub fn dimension(&self) -> &str {
        &self.dimension
    }

    pub fn settings(&self) -> Arc<Settings> {
        self.settings.load_full()
    }

    pub(crate) fn members(&self) -> MutexGuard<'_, Vec<Arc<Member>>> {
        self.members.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn in_use(&self) -> bool {
        self.in_use.load(Relaxed)
    }

    /// The health a target gets on registration, given the group's use and checks.
    fn fresh_health(&self, settings: &Settings) -> Health {
        if !self.in_use() {
            Health::unused()
        } else if !settings.health_check.enabled {
            Health::unavailable()
        } else {
            Health::registered()
        }
    }

    /// Takes a new configuration of the group: settings, whether a listener uses it, and its
    /// targets. New targets start initial (or unused). A target listed as draining
    /// (`draining_until_ms`) drains until then; one no longer listed at all drains for the
    /// group's deregistration delay, unless it was draining already (then it is forgotten). A
    /// draining target listed again without draining is registered anew.
    pub(crate) fn reconfigure(self: &Arc<Self>, tg: &TargetGroup, in_use: bool) {
        let settings = Settings::of(tg);
        let was_in_use = self.in_use.swap(in_use, Relaxed);
        let before = self.settings.load_full();
        let checks_toggled = before.health_check.enabled != settings.health_check.enabled;
        self.settings.store(Arc::new(settings.clone()));
        let now = self.clock.now().0;
        let mut members = self.members();
        // Targets whose standing changed with the group's use or its checks start over.
        if was_in_use != in_use || checks_toggled {
            for m in members.iter().filter(|m| !m.draining()) {
                m.set_health(self.fresh_health(&settings), now);
            }
        }
        let mut routable: Vec<Arc<Member>> = Vec::with_capacity(tg.targets.len());
        let mut listed: Vec<Arc<Member>> = Vec::with_capacity(tg.targets.len());
        let mut added = false;
        for t in &tg.targets {
            let existing =
                members.iter().find(|m| m.target.same(t) && (t.draining_until_ms.is_some() || !m.draining()));
            let m = match existing {
                Some(m) => m.clone(),
                None => {
                    let m = Arc::new(Member::new(t.clone(), &self.arn, self.fresh_health(&settings)));
                    // A draining target registered again is a new registration.
                    members.retain(|d| !d.target.same(t));
                    members.push(m.clone());
                    added = true;
                    m
                }
            };
            match t.draining_until_ms {
                Some(until) if !m.draining() => {
                    let delay = Duration::from_millis(until.saturating_sub(now).max(0) as u64);
                    self.start_draining(&m, delay, now);
                }
                Some(_) => {}
                None if !routable.iter().any(|k| Arc::ptr_eq(k, &m)) => routable.push(m.clone()),
                None => {}
            }
            listed.push(m);
        }
        let mut forgotten = Vec::new();
        for m in members.iter() {
            if listed.iter().any(|k| Arc::ptr_eq(k, m)) {
                continue;
            }
            if m.draining() {
                forgotten.push(m.clone());
            } else {
                self.start_draining(m, settings.deregistration_delay, now);
            }
        }
        members.retain(|m| !forgotten.iter().any(|f| Arc::ptr_eq(f, m)));
        drop(members);
        self.routable.store(Arc::new(routable));
        if added {
            self.registered.notify_one();
        }
    }

    fn start_draining(self: &Arc<Self>, m: &Arc<Member>, delay: Duration, now: i64) {
        m.set_health(Health::draining(), now);
        // The delay counts from now, not from when the task first runs.
        let delay = tokio::time::sleep(delay);
        tokio::spawn(drain(self.clone(), m.clone(), delay));
    }

    /// Whether a draining target has nothing in flight any more (or is not known at all). A
    /// target still registered here is not drained: this data plane has not taken it out of
    /// rotation yet (its deregistration is still on its way), so it may get new requests.
    pub fn drained(&self, id: &str, port: u16) -> bool {
        let members = self.members();
        members
            .iter()
            .filter(|m| m.target.id == id && m.target.port == port)
            .all(|m| m.draining() && m.in_flight() == 0)
    }

    /// A registered (not draining) target's health.
    pub fn health_of(&self, id: &str, port: u16) -> Option<Health> {
        let members = self.members();
        let m = members.iter().find(|m| m.target.id == id && m.target.port == port && !m.draining())?;
        Some(m.health().clone())
    }

    /// Chooses a target for a request: the sticky one if it can still take traffic, else by the
    /// group's algorithm among the healthy targets, or among all registered ones when none is
    /// healthy (ALB fails open). `None` when nothing is registered.
    pub fn pick(&self, sticky: Option<u64>) -> Option<Arc<Member>> {
        let list = self.routable.load();
        if list.is_empty() {
            return None;
        }
        let any_healthy = list.iter().any(|m| routable_code(m.status.load(Relaxed)));
        let eligible = |m: &Member| !any_healthy || routable_code(m.status.load(Relaxed));
        if let Some(key) = sticky
            && let Some(m) = list.iter().find(|m| m.key == key && eligible(m))
        {
            return Some(m.clone());
        }
        let settings = self.settings.load();
        let start = self.rr.fetch_add(1, Relaxed);
        let n = list.len();
        if settings.algorithm == Algorithm::LeastOutstandingRequests {
            let mut best: Option<&Arc<Member>> = None;
            for i in 0..n {
                let m = &list[(start + i) % n];
                if eligible(m) && best.is_none_or(|b| m.in_flight() < b.in_flight()) {
                    best = Some(m);
                }
            }
            return best.cloned();
        }
        let slow_start = settings.slow_start.as_millis() as i64;
        if slow_start > 0 {
            let now = self.clock.now().0;
            // A target's weight in 1/1000: full, or growing linearly over its slow start.
            let weight = |m: &Member| {
                let since = m.healthy_since.load(Relaxed);
                if since > 0 && now - since < slow_start {
                    ((now - since).max(0) * 1000 / slow_start).max(1)
                } else {
                    1000
                }
            };
            if list.iter().any(|m| eligible(m) && weight(m) < 1000) {
                return self.smooth_weighted(&list, &eligible, &weight);
            }
        }
        // The k-th eligible target, so that skipping ineligible ones does not favour their
        // successors.
        let count = list.iter().filter(|m| eligible(m)).count();
        if count == 0 {
            return None;
        }
        list.iter().filter(|m| eligible(m)).nth(start % count).cloned()
    }

    /// Chooses by a hash (NLB's source-IP stickiness): the same hash, the same target, while
    /// the eligible targets stay the same.
    pub fn pick_by_hash(&self, hash: u64) -> Option<Arc<Member>> {
        let list = self.routable.load();
        let any_healthy = list.iter().any(|m| routable_code(m.status.load(Relaxed)));
        let eligible: Vec<&Arc<Member>> =
            list.iter().filter(|m| !any_healthy || routable_code(m.status.load(Relaxed))).collect();
        if eligible.is_empty() {
            return None;
        }
        Some(eligible[(hash % eligible.len() as u64) as usize].clone())
    }

    /// nginx's smooth weighted round robin, while some target is in slow start.
    fn smooth_weighted(
        &self,
        list: &[Arc<Member>],
        eligible: &dyn Fn(&Member) -> bool,
        weight: &dyn Fn(&Member) -> i64,
    ) -> Option<Arc<Member>> {
        let _one_at_a_time = self.weighted.lock().unwrap_or_else(|e| e.into_inner());
        let mut total = 0;
        let mut best: Option<(&Arc<Member>, i64)> = None;
        for m in list.iter().filter(|m| eligible(m)) {
            let w = weight(m);
            let current = m.current.fetch_add(w, Relaxed) + w;
            total += w;
            if best.is_none_or(|(_, c)| current > c) {
                best = Some((m, current));
            }
        }
        let (m, _) = best?;
        m.current.fetch_sub(total, Relaxed);
        Some(m.clone())
    }

    /// Healthy and unhealthy targets, as HealthyHostCount and UnHealthyHostCount count them.
    pub fn host_counts(&self) -> (usize, usize) {
        let list = self.routable.load();
        let healthy = list.iter().filter(|m| routable_code(m.status.load(Relaxed))).count();
        let unhealthy = list.iter().filter(|m| m.status.load(Relaxed) == code(State::Unhealthy)).count();
        (healthy, unhealthy)
    }

    /// DescribeTargetHealth's view: every registered and draining target.
    pub fn health_report(&self) -> Vec<TargetHealth> {
        let hc_port = self.settings.load().health_check.port;
        self.members()
            .iter()
            .map(|m| {
                let h = m.health();
                TargetHealth {
                    id: m.target.id.clone(),
                    port: m.target.port,
                    health_check_port: hc_port.unwrap_or(m.target.port).to_string(),
                    state: h.state,
                    reason: h.reason,
                    description: h.description.clone(),
                }
            })
            .collect()
    }

    /// The targets health checks look at: registered, not draining.
    pub(crate) fn checked_members(&self) -> Vec<Arc<Member>> {
        self.routable.load().as_ref().clone()
    }

    pub(crate) fn now_ms(&self) -> i64 {
        self.clock.now().0
    }
}

/// Keeps a deregistered target draining until nothing is in flight to it or the deregistration
/// delay has passed, then forgets it.
async fn drain(group: Arc<Group>, member: Arc<Member>, delay: tokio::time::Sleep) {
    tokio::select! {
        () = delay => {}
        () = member.idle() => {}
    }
    group.members().retain(|m| !Arc::ptr_eq(m, &member));
}

#[cfg(test)]
mod tests {
    use super::*;
    use gantry_core::{FixedClock, Timestamp};
    use std::net::SocketAddr;

    fn target(port: u16) -> Target {
        Target::ip(SocketAddr::from(([127, 0, 0, 1], port)))
    }

    fn group(ports: &[u16], clock: Arc<FixedClock>) -> (Arc<Group>, TargetGroup) {
        let mut tg =
            TargetGroup::new("arn:aws:elasticloadbalancing:us-east-1:1:targetgroup/t/1", Protocol::Http);
        tg.targets = ports.iter().map(|p| target(*p)).collect();
        let g = Arc::new(Group::new(&tg, clock));
        (g, tg)
    }

    fn set(g: &Group, port: u16, state: State) {
        let m = g.members().iter().find(|m| m.target.port == port).cloned().unwrap();
        let now = g.now_ms();
        let mut h = m.health();
        let before = h.state;
        h.state = state;
        drop(h);
        m.record_transition(before, state, now);
    }

    fn picks(g: &Group, n: usize) -> std::collections::BTreeMap<u16, usize> {
        let mut out = std::collections::BTreeMap::new();
        for _ in 0..n {
            *out.entry(g.pick(None).unwrap().target.port).or_default() += 1;
        }
        out
    }

    #[tokio::test]
    async fn round_robin_over_healthy_then_fail_open() {
        let clock = Arc::new(FixedClock::new(Timestamp(1_000)));
        let (g, tg) = group(&[1, 2, 3], clock);
        g.reconfigure(&tg, true);
        assert_eq!(g.health_report()[0].state, State::Initial);
        set(&g, 1, State::Healthy);
        set(&g, 2, State::Healthy);
        set(&g, 3, State::Unhealthy);
        assert_eq!(picks(&g, 100), [(1, 50), (2, 50)].into());
        assert_eq!(g.host_counts(), (2, 1));
        // Every target unhealthy: all of them get requests.
        set(&g, 1, State::Unhealthy);
        set(&g, 2, State::Unhealthy);
        assert_eq!(picks(&g, 99), [(1, 33), (2, 33), (3, 33)].into());
    }

    #[tokio::test]
    async fn least_outstanding_requests() {
        let clock = Arc::new(FixedClock::new(Timestamp(1_000)));
        let (g, mut tg) = group(&[1, 2], clock);
        tg.algorithm = Algorithm::LeastOutstandingRequests;
        g.reconfigure(&tg, true);
        set(&g, 1, State::Healthy);
        set(&g, 2, State::Healthy);
        let busy = g.pick(None).unwrap();
        let _guards: Vec<_> = (0..3).map(|_| busy.start()).collect();
        for _ in 0..10 {
            assert_ne!(g.pick(None).unwrap().target.port, busy.target.port);
        }
    }

    #[tokio::test]
    async fn slow_start_ramps_linearly() {
        let clock = Arc::new(FixedClock::new(Timestamp(1_000)));
        let (g, mut tg) = group(&[1, 2], clock.clone());
        tg.slow_start = Duration::from_secs(100);
        g.reconfigure(&tg, true);
        set(&g, 1, State::Healthy);
        clock.advance_ms(200_000);
        set(&g, 2, State::Healthy);
        // 25 s into its 100 s: a quarter of its turns.
        clock.advance_ms(25_000);
        let got = picks(&g, 1000);
        let share = got[&2] as f64 / 1000.0;
        // Weights 1 and 0.25: a fifth of the requests.
        assert!((share - 0.2).abs() < 0.01, "{got:?}");
        clock.advance_ms(100_000);
        assert_eq!(picks(&g, 1000), [(1, 500), (2, 500)].into());
    }

    #[tokio::test]
    async fn sticky_target_while_it_can_take_traffic() {
        let clock = Arc::new(FixedClock::new(Timestamp(1_000)));
        let (g, tg) = group(&[1, 2], clock);
        g.reconfigure(&tg, true);
        set(&g, 1, State::Healthy);
        set(&g, 2, State::Healthy);
        let two = g.members().iter().find(|m| m.target.port == 2).unwrap().key;
        for _ in 0..5 {
            assert_eq!(g.pick(Some(two)).unwrap().target.port, 2);
        }
        set(&g, 2, State::Unhealthy);
        assert_eq!(g.pick(Some(two)).unwrap().target.port, 1);
    }

    #[tokio::test(start_paused = true)]
    async fn draining_until_idle_or_the_delay() {
        let clock = Arc::new(FixedClock::new(Timestamp(1_000)));
        let (g, mut tg) = group(&[1, 2], clock);
        tg.deregistration_delay = Duration::from_secs(30);
        g.reconfigure(&tg, true);
        let one = g.members()[0].clone();
        let (id, port) = (one.target.id.clone(), one.target.port);
        // Registered here, idle or not: not drained (its deregistration has not arrived).
        assert!(!g.drained(&id, port));
        let guard = one.start();
        tg.targets.remove(0);
        g.reconfigure(&tg, true);
        assert!(!g.drained(&id, port), "draining with a request in flight");
        let report = g.health_report();
        assert_eq!(report.len(), 2);
        assert_eq!(report[0].state, State::Draining);
        assert_eq!(report[0].reason.map(|r| r.as_str()), Some("Target.DeregistrationInProgress"));
        for _ in 0..10 {
            assert_eq!(g.pick(None).unwrap().target.port, 2);
        }
        tokio::task::yield_now().await;
        assert_eq!(g.health_report().len(), 2);
        drop(guard);
        assert!(g.drained(&id, port), "draining with nothing in flight");
        tokio::task::yield_now().await;
        tokio::task::yield_now().await;
        assert_eq!(g.health_report().len(), 1, "gone once idle");
        assert!(g.drained(&id, port), "not known any more");

        // Still busy: gone after the delay.
        let two = g.members()[0].clone();
        let _busy = two.start();
        tg.targets.clear();
        g.reconfigure(&tg, true);
        assert!(g.pick(None).is_none());
        tokio::time::advance(Duration::from_secs(29)).await;
        tokio::task::yield_now().await;
        assert_eq!(g.health_report().len(), 1);
        tokio::time::advance(Duration::from_secs(2)).await;
        for _ in 0..5 {
            tokio::task::yield_now().await;
        }
        assert!(g.health_report().is_empty());
    }

    #[tokio::test]
    async fn unused_until_a_listener_forwards() {
        let clock = Arc::new(FixedClock::new(Timestamp(1_000)));
        let (g, tg) = group(&[1], clock);
        g.reconfigure(&tg, false);
        let r = &g.health_report()[0];
        assert_eq!((r.state, r.reason.map(|r| r.as_str())), (State::Unused, Some("Target.NotInUse")));
        g.reconfigure(&tg, true);
        let r = &g.health_report()[0];
        assert_eq!(
            (r.state, r.reason.map(|r| r.as_str())),
            (State::Initial, Some("Elb.RegistrationInProgress"))
        );
    }
}
