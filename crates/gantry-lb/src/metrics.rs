//! CloudWatch's load balancer metrics, counted in atomics on the request path and handed to the
//! `MetricSink` once per period as `AWS/ApplicationELB` (or `AWS/NetworkELB`) datapoints.

use crate::group::Group;
use gantry_core::Timestamp;
use gantry_ports::{MetricDatum, MetricValue};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// What a load balancer counts (for an ALB, per load balancer and per target group behind it).
#[derive(Debug)]
pub struct Counters {
    pub requests: AtomicU64,
    pub target_2xx: AtomicU64,
    pub target_3xx: AtomicU64,
    pub target_4xx: AtomicU64,
    pub target_5xx: AtomicU64,
    pub elb_3xx: AtomicU64,
    pub elb_4xx: AtomicU64,
    pub elb_5xx: AtomicU64,
    pub elb_502: AtomicU64,
    pub elb_503: AtomicU64,
    pub elb_504: AtomicU64,
    pub fixed_responses: AtomicU64,
    pub redirects: AtomicU64,
    pub target_connection_errors: AtomicU64,
    /// TargetResponseTime's samples, in microseconds.
    rt_count: AtomicU64,
    rt_sum: AtomicU64,
    rt_min: AtomicU64,
    rt_max: AtomicU64,
    /// Connections (NLB: flows) accepted, open now, and closed within the period.
    pub new_connections: AtomicU64,
    pub active_connections: AtomicU64,
    pub closed_connections: AtomicU64,
    pub processed_bytes: AtomicU64,
}

impl Default for Counters {
    fn default() -> Self {
        let z = || AtomicU64::new(0);
        Counters {
            requests: z(),
            target_2xx: z(),
            target_3xx: z(),
            target_4xx: z(),
            target_5xx: z(),
            elb_3xx: z(),
            elb_4xx: z(),
            elb_5xx: z(),
            elb_502: z(),
            elb_503: z(),
            elb_504: z(),
            fixed_responses: z(),
            redirects: z(),
            target_connection_errors: z(),
            rt_count: z(),
            rt_sum: z(),
            rt_min: AtomicU64::new(u64::MAX),
            rt_max: z(),
            new_connections: z(),
            active_connections: z(),
            closed_connections: z(),
            processed_bytes: z(),
        }
    }
}

fn inc(c: &AtomicU64) {
    c.fetch_add(1, Relaxed);
}

impl Counters {
    /// A target answered with `status` after `micros`.
    pub fn target_response(&self, status: u16, micros: u64) {
        match status / 100 {
            2 => inc(&self.target_2xx),
            3 => inc(&self.target_3xx),
            4 => inc(&self.target_4xx),
            5 => inc(&self.target_5xx),
            _ => {}
        }
        inc(&self.rt_count);
        self.rt_sum.fetch_add(micros, Relaxed);
        self.rt_min.fetch_min(micros, Relaxed);
        self.rt_max.fetch_max(micros, Relaxed);
    }

    /// The load balancer answered by itself with `status`.
    pub fn elb_response(&self, status: u16) {
        match status {
            300..=399 => inc(&self.elb_3xx),
            400..=499 => inc(&self.elb_4xx),
            500..=599 => {
                inc(&self.elb_5xx);
                match status {
                    502 => inc(&self.elb_502),
                    503 => inc(&self.elb_503),
                    504 => inc(&self.elb_504),
                    _ => {}
                }
            }
            _ => {}
        }
    }

    pub fn connection_opened(&self) {
        inc(&self.new_connections);
        inc(&self.active_connections);
    }

    pub fn connection_closed(&self) {
        self.active_connections.fetch_sub(1, Relaxed);
        inc(&self.closed_connections);
    }

    /// Moves the period's counts out, leaving zeros (open connections stay counted).
    fn take(&self) -> Snapshot {
        let t = |c: &AtomicU64| c.swap(0, Relaxed);
        let active = self.active_connections.load(Relaxed);
        Snapshot {
            requests: t(&self.requests),
            target: [t(&self.target_2xx), t(&self.target_3xx), t(&self.target_4xx), t(&self.target_5xx)],
            elb: [t(&self.elb_3xx), t(&self.elb_4xx), t(&self.elb_5xx)],
            elb_5xx_kinds: [t(&self.elb_502), t(&self.elb_503), t(&self.elb_504)],
            fixed: t(&self.fixed_responses),
            redirects: t(&self.redirects),
            conn_errors: t(&self.target_connection_errors),
            rt_count: t(&self.rt_count),
            rt_sum: t(&self.rt_sum),
            rt_min: self.rt_min.swap(u64::MAX, Relaxed),
            rt_max: t(&self.rt_max),
            new_connections: t(&self.new_connections),
            // Connections that were open at some time in the period.
            active_connections: active + t(&self.closed_connections),
            processed_bytes: t(&self.processed_bytes),
        }
    }
}

struct Snapshot {
    requests: u64,
    target: [u64; 4],
    elb: [u64; 3],
    elb_5xx_kinds: [u64; 3],
    fixed: u64,
    redirects: u64,
    conn_errors: u64,
    rt_count: u64,
    rt_sum: u64,
    rt_min: u64,
    rt_max: u64,
    new_connections: u64,
    active_connections: u64,
    processed_bytes: u64,
}

pub const ALB: &str = "AWS/ApplicationELB";
pub const NLB: &str = "AWS/NetworkELB";

/// CloudWatch's dimension value for a load balancer ARN (`app/NAME/ID`, `net/NAME/ID`).
pub fn lb_dimension(arn: &str) -> String {
    arn.split_once(":loadbalancer/").map(|(_, d)| d).unwrap_or(arn).to_string()
}

/// CloudWatch's dimension value for a target group ARN (`targetgroup/NAME/ID`).
pub fn tg_dimension(arn: &str) -> String {
    arn.rsplit_once(':').map(|(_, d)| d).unwrap_or(arn).to_string()
}

/// Builds datapoints into `out`.
pub(crate) struct Emitter<'a> {
    pub now: Timestamp,
    pub out: &'a mut Vec<MetricDatum>,
}

impl Emitter<'_> {
    fn push(
        &mut self,
        ns: &'static str,
        name: &'static str,
        dims: &[(&'static str, &str)],
        value: MetricValue,
        unit: &'static str,
    ) {
        self.out.push(MetricDatum {
            namespace: ns,
            metric_name: name,
            dimensions: dims.iter().map(|(k, v)| (*k, v.to_string())).collect(),
            timestamp: self.now,
            value,
            unit,
        });
    }

    fn count(&mut self, ns: &'static str, name: &'static str, dims: &[(&'static str, &str)], n: u64) {
        if n > 0 {
            self.push(ns, name, dims, MetricValue::Value(n as f64), "Count");
        }
    }

    /// A load balancer's own datapoints.
    pub fn load_balancer(&mut self, network: bool, lb: &str, c: &Counters) {
        let s = c.take();
        let dims = [("LoadBalancer", lb)];
        if network {
            self.count(NLB, "NewFlowCount", &dims, s.new_connections);
            self.count(NLB, "ActiveFlowCount", &dims, s.active_connections);
            if s.processed_bytes > 0 {
                self.push(
                    NLB,
                    "ProcessedBytes",
                    &dims,
                    MetricValue::Value(s.processed_bytes as f64),
                    "Bytes",
                );
            }
            self.count(NLB, "TCP_ELB_Reset_Count", &dims, s.conn_errors);
            return;
        }
        self.count(ALB, "RequestCount", &dims, s.requests);
        self.count(ALB, "NewConnectionCount", &dims, s.new_connections);
        self.count(ALB, "ActiveConnectionCount", &dims, s.active_connections);
        self.targets(&dims, &s);
        for (name, n) in [
            ("HTTPCode_ELB_3XX_Count", s.elb[0]),
            ("HTTPCode_ELB_4XX_Count", s.elb[1]),
            ("HTTPCode_ELB_5XX_Count", s.elb[2]),
        ] {
            self.count(ALB, name, &dims, n);
        }
        for (name, n) in [
            ("HTTPCode_ELB_502_Count", s.elb_5xx_kinds[0]),
            ("HTTPCode_ELB_503_Count", s.elb_5xx_kinds[1]),
            ("HTTPCode_ELB_504_Count", s.elb_5xx_kinds[2]),
        ] {
            self.count(ALB, name, &dims, n);
        }
        self.count(ALB, "HTTP_Fixed_Response_Count", &dims, s.fixed);
        self.count(ALB, "HTTP_Redirect_Count", &dims, s.redirects);
        self.count(ALB, "TargetConnectionErrorCount", &dims, s.conn_errors);
    }

    /// A target group's datapoints behind one load balancer, with its host counts.
    pub fn target_group(&mut self, network: bool, lb: &str, group: &Group, c: &Counters) {
        let s = c.take();
        let tg = group.dimension();
        let dims = [("TargetGroup", tg), ("LoadBalancer", lb)];
        let ns = if network { NLB } else { ALB };
        let (healthy, unhealthy) = group.host_counts();
        self.push(ns, "HealthyHostCount", &dims, MetricValue::Value(healthy as f64), "Count");
        self.push(ns, "UnHealthyHostCount", &dims, MetricValue::Value(unhealthy as f64), "Count");
        if network {
            self.count(NLB, "NewFlowCount", &dims, s.new_connections);
            self.count(NLB, "ActiveFlowCount", &dims, s.active_connections);
            return;
        }
        self.count(ALB, "RequestCount", &dims, s.requests);
        self.targets(&dims, &s);
        self.count(ALB, "TargetConnectionErrorCount", &dims, s.conn_errors);
        if s.requests > 0 {
            // CloudWatch's RequestCountPerTarget: the group's requests over its healthy targets.
            let per = s.requests as f64 / healthy.max(1) as f64;
            self.push(ALB, "RequestCountPerTarget", &[("TargetGroup", tg)], MetricValue::Value(per), "Count");
        }
    }

    fn targets(&mut self, dims: &[(&'static str, &str)], s: &Snapshot) {
        let names = [
            "HTTPCode_Target_2XX_Count",
            "HTTPCode_Target_3XX_Count",
            "HTTPCode_Target_4XX_Count",
            "HTTPCode_Target_5XX_Count",
        ];
        for (name, n) in names.into_iter().zip(s.target) {
            self.count(ALB, name, dims, n);
        }
        if s.rt_count > 0 {
            let secs = |us: u64| us as f64 / 1e6;
            let stats = MetricValue::Statistics {
                sample_count: s.rt_count as f64,
                sum: secs(s.rt_sum),
                minimum: secs(s.rt_min),
                maximum: secs(s.rt_max),
            };
            self.push(ALB, "TargetResponseTime", dims, stats, "Seconds");
        }
    }
}

/// The counters of one load balancer and of each target group behind it.
#[derive(Debug, Default)]
pub(crate) struct LbCounters {
    pub network: bool,
    pub own: Counters,
    /// By target group ARN.
    pub groups: std::sync::Mutex<Vec<(Arc<Group>, Arc<Counters>)>>,
}

impl LbCounters {
    /// The counters of a target group behind this load balancer (created on first use).
    pub fn for_group(&self, group: &Arc<Group>) -> Arc<Counters> {
        let mut groups = self.groups.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, c)) = groups.iter().find(|(g, _)| Arc::ptr_eq(g, group)) {
            return c.clone();
        }
        let c = Arc::new(Counters::default());
        groups.push((group.clone(), c.clone()));
        c
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dimensions() {
        assert_eq!(
            lb_dimension(
                "arn:aws:elasticloadbalancing:us-east-1:123456789012:loadbalancer/app/web/50dc6c495c0c9188"
            ),
            "app/web/50dc6c495c0c9188"
        );
        assert_eq!(
            tg_dimension(
                "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/web/6d0ecf831eec9f09"
            ),
            "targetgroup/web/6d0ecf831eec9f09"
        );
    }

    #[test]
    fn counts_and_response_times() {
        let c = Counters::default();
        c.requests.fetch_add(3, Relaxed);
        c.target_response(200, 1_000);
        c.target_response(503, 3_000);
        c.elb_response(502);
        let mut out = Vec::new();
        Emitter { now: Timestamp(60_000), out: &mut out }.load_balancer(false, "app/x/1", &c);
        let find = |n: &str| out.iter().find(|d| d.metric_name == n).map(|d| d.value);
        assert_eq!(find("RequestCount"), Some(MetricValue::Value(3.0)));
        assert_eq!(find("HTTPCode_Target_2XX_Count"), Some(MetricValue::Value(1.0)));
        assert_eq!(find("HTTPCode_Target_5XX_Count"), Some(MetricValue::Value(1.0)));
        assert_eq!(find("HTTPCode_ELB_5XX_Count"), Some(MetricValue::Value(1.0)));
        assert_eq!(find("HTTPCode_ELB_502_Count"), Some(MetricValue::Value(1.0)));
        assert_eq!(find("HTTPCode_Target_4XX_Count"), None);
        assert_eq!(
            find("TargetResponseTime"),
            Some(MetricValue::Statistics { sample_count: 2.0, sum: 0.004, minimum: 0.001, maximum: 0.003 })
        );
        // The period's counts were moved out.
        let mut again = Vec::new();
        Emitter { now: Timestamp(120_000), out: &mut again }.load_balancer(false, "app/x/1", &c);
        assert!(again.is_empty(), "{again:?}");
    }
}
