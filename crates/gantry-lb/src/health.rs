//! Target health as ELB reports it (DescribeTargetHealth's `TargetHealth`): the states, the
//! reason codes and their descriptions, and the pure transition rule that health check results
//! drive. The prober (`prober.rs`) feeds it; nothing here does I/O or reads a clock.

use crate::config::HealthCheck;

/// `TargetHealth.State`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum State {
    Initial,
    Healthy,
    Unhealthy,
    Unused,
    Draining,
    Unavailable,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Initial => "initial",
            State::Healthy => "healthy",
            State::Unhealthy => "unhealthy",
            State::Unused => "unused",
            State::Draining => "draining",
            State::Unavailable => "unavailable",
        }
    }
}

/// `TargetHealth.Reason`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    RegistrationInProgress,
    InitialHealthChecking,
    ResponseCodeMismatch,
    Timeout,
    FailedHealthChecks,
    NotRegistered,
    NotInUse,
    DeregistrationInProgress,
    HealthCheckDisabled,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::RegistrationInProgress => "Elb.RegistrationInProgress",
            Reason::InitialHealthChecking => "Elb.InitialHealthChecking",
            Reason::ResponseCodeMismatch => "Target.ResponseCodeMismatch",
            Reason::Timeout => "Target.Timeout",
            Reason::FailedHealthChecks => "Target.FailedHealthChecks",
            Reason::NotRegistered => "Target.NotRegistered",
            Reason::NotInUse => "Target.NotInUse",
            Reason::DeregistrationInProgress => "Target.DeregistrationInProgress",
            Reason::HealthCheckDisabled => "Target.HealthCheckDisabled",
        }
    }
}

/// One target's health as DescribeTargetHealth shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetHealth {
    pub id: String,
    pub port: u16,
    /// The health check's port (`HealthCheckPort`), as a string like ELB's.
    pub health_check_port: String,
    pub state: State,
    pub reason: Option<Reason>,
    pub description: Option<String>,
}

/// What one health check found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Probe {
    Passed,
    /// An HTTP answer whose code the matcher refused.
    CodeMismatch(u16),
    /// No answer within the timeout.
    TimedOut,
    /// Connection refused, reset, or a malformed answer.
    Failed,
}

/// A registered target's health: the state ELB reports, the reason, and the run of results
/// that the thresholds count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Health {
    pub state: State,
    pub reason: Option<Reason>,
    pub description: Option<String>,
    passes: u32,
    failures: u32,
}

impl Health {
    /// A target just registered (or a group that just came into use): no check yet.
    pub fn registered() -> Self {
        Health {
            state: State::Initial,
            reason: Some(Reason::RegistrationInProgress),
            description: Some("Target registration is in progress".into()),
            passes: 0,
            failures: 0,
        }
    }

    /// A target of a group no listener forwards to.
    pub fn unused() -> Self {
        Health {
            state: State::Unused,
            reason: Some(Reason::NotInUse),
            description: Some(
                "Target group is not configured to receive traffic from the load balancer".into(),
            ),
            passes: 0,
            failures: 0,
        }
    }

    /// A target of a group whose health checks are off: it gets traffic, as if healthy.
    pub fn unavailable() -> Self {
        Health {
            state: State::Unavailable,
            reason: Some(Reason::HealthCheckDisabled),
            description: Some("Health checks are disabled".into()),
            passes: 0,
            failures: 0,
        }
    }

    /// A deregistered target whose requests are finishing.
    pub fn draining() -> Self {
        Health {
            state: State::Draining,
            reason: Some(Reason::DeregistrationInProgress),
            description: Some("Target deregistration is in progress".into()),
            passes: 0,
            failures: 0,
        }
    }

    /// Takes one check's result; returns whether the state changed. A target turns healthy after
    /// `healthy_threshold` passes in a row and unhealthy after `unhealthy_threshold` failures in a
    /// row (from initial as from healthy); an unhealthy one's reason follows its latest failure.
    pub fn observe(&mut self, probe: &Probe, check: &HealthCheck) -> bool {
        if matches!(self.state, State::Draining | State::Unused | State::Unavailable) {
            return false;
        }
        let before = self.state;
        if *probe == Probe::Passed {
            self.passes = self.passes.saturating_add(1);
            self.failures = 0;
            if self.passes >= check.healthy_threshold.max(1) {
                self.set(State::Healthy, None, None);
            } else if self.state == State::Initial {
                self.set_initial_checking();
            }
        } else {
            self.failures = self.failures.saturating_add(1);
            self.passes = 0;
            let (reason, description) = match probe {
                Probe::CodeMismatch(code) => {
                    (Reason::ResponseCodeMismatch, format!("Health checks failed with these codes: [{code}]"))
                }
                Probe::TimedOut => (Reason::Timeout, "Request timed out".to_string()),
                _ => (Reason::FailedHealthChecks, "Health checks failed".to_string()),
            };
            if self.failures >= check.unhealthy_threshold.max(1) || self.state == State::Unhealthy {
                self.set(State::Unhealthy, Some(reason), Some(description));
            } else if self.state == State::Initial {
                self.set_initial_checking();
            }
        }
        self.state != before
    }

    fn set_initial_checking(&mut self) {
        self.set(
            State::Initial,
            Some(Reason::InitialHealthChecking),
            Some("Initial health checks in progress".into()),
        );
    }

    fn set(&mut self, state: State, reason: Option<Reason>, description: Option<String>) {
        self.state = state;
        self.reason = reason;
        self.description = description;
    }
}

/// An ELB matcher (`200`, `200,202`, `200-299`, or a mix) and whether a code satisfies it.
pub fn code_matches(matcher: &str, code: u16) -> bool {
    matcher.split(',').map(str::trim).any(|part| match part.split_once('-') {
        Some((lo, hi)) => match (lo.trim().parse::<u16>(), hi.trim().parse::<u16>()) {
            (Ok(lo), Ok(hi)) => (lo..=hi).contains(&code),
            _ => false,
        },
        None => part.parse::<u16>() == Ok(code),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Protocol;

    fn check(healthy: u32, unhealthy: u32) -> HealthCheck {
        HealthCheck {
            healthy_threshold: healthy,
            unhealthy_threshold: unhealthy,
            ..HealthCheck::defaults(Protocol::Http)
        }
    }

    /// Runs probes through a fresh target and returns the (state, reason) after each.
    fn walk(hc: &HealthCheck, probes: &[Probe]) -> Vec<(State, Option<&'static str>)> {
        let mut h = Health::registered();
        probes
            .iter()
            .map(|p| {
                h.observe(p, hc);
                (h.state, h.reason.map(Reason::as_str))
            })
            .collect()
    }

    #[test]
    fn initial_to_healthy_after_the_threshold() {
        let got = walk(&check(3, 2), &[Probe::Passed, Probe::Passed, Probe::Passed]);
        assert_eq!(
            got,
            vec![
                (State::Initial, Some("Elb.InitialHealthChecking")),
                (State::Initial, Some("Elb.InitialHealthChecking")),
                (State::Healthy, None),
            ]
        );
    }

    #[test]
    fn a_failure_resets_the_run_of_passes() {
        let got = walk(&check(2, 3), &[Probe::Passed, Probe::Failed, Probe::Passed, Probe::Passed]);
        assert_eq!(got.last().unwrap(), &(State::Healthy, None));
        assert_eq!(got[2].0, State::Initial);
    }

    #[test]
    fn healthy_to_unhealthy_with_the_reason_of_the_last_failure() {
        let hc = check(1, 2);
        let got =
            walk(&hc, &[Probe::Passed, Probe::CodeMismatch(500), Probe::CodeMismatch(503), Probe::TimedOut]);
        assert_eq!(got[1], (State::Healthy, None));
        assert_eq!(got[2], (State::Unhealthy, Some("Target.ResponseCodeMismatch")));
        assert_eq!(got[3], (State::Unhealthy, Some("Target.Timeout")));
        let mut h = Health::registered();
        for p in [Probe::Passed, Probe::CodeMismatch(500), Probe::CodeMismatch(503)] {
            h.observe(&p, &hc);
        }
        assert_eq!(h.description.as_deref(), Some("Health checks failed with these codes: [503]"));
        // Back to healthy after healthy_threshold passes.
        assert!(h.observe(&Probe::Passed, &hc));
        assert_eq!(h.state, State::Healthy);
    }

    #[test]
    fn initial_to_unhealthy() {
        let got = walk(&check(5, 2), &[Probe::Failed, Probe::Failed]);
        assert_eq!(
            got,
            vec![
                (State::Initial, Some("Elb.InitialHealthChecking")),
                (State::Unhealthy, Some("Target.FailedHealthChecks"))
            ]
        );
    }

    #[test]
    fn draining_ignores_checks() {
        let mut h = Health::draining();
        assert!(!h.observe(&Probe::Passed, &check(1, 1)));
        assert_eq!(h.state, State::Draining);
    }

    #[test]
    fn matchers() {
        for (m, code, want) in [
            ("200", 200, true),
            ("200", 201, false),
            ("200,202", 202, true),
            ("200-299", 250, true),
            ("200-299", 300, false),
            ("200-299,302", 302, true),
            ("x", 200, false),
        ] {
            assert_eq!(code_matches(m, code), want, "{m} {code}");
        }
    }
}
