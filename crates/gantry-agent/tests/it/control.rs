//! The control plane the agent tests talk to: one double that answers polls from a queue,
//! records every report, and can refuse STOPPED reports or serve an agent binary; and the agent
//! the tests run against it (the fake runtime, a fixed clock, node `NODE`).

use gantry_agent::agent::{Agent, AgentConfig};
use gantry_agent::client::{ClientError, ClientResult, ControlClient};
use gantry_agent::fake::FakeRuntime;
use gantry_agent::runtime::BoxFuture;
use gantry_agent::update::Sink;
use gantry_core::protocol::{
    AgentUpdateReport, Assignments, PollRequest, TaskCredentials, TaskCredentialsRequest, TaskHealthReport,
};
use gantry_core::{FixedClock, Timestamp};
use gantry_model::*;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub const NODE: &str = "arn:aws:ecs:us-east-1:000000000000:container-instance/c/node1";

#[derive(Default)]
pub struct Recorder {
    pub tasks: Mutex<Vec<SubmitTaskStateChangeRequest>>,
    /// What polls answer, in turn (then they wait forever), and the requests they got.
    pub answers: Mutex<VecDeque<Assignments>>,
    pub polls: Mutex<Vec<PollRequest>>,
    pub health: Mutex<Vec<TaskHealthReport>>,
    pub attachments: Mutex<Vec<SubmitAttachmentStateChangesRequest>>,
    pub credentials_asked: Mutex<Vec<String>>,
    /// While set, STOPPED reports fail as a control plane that is down; every STOPPED report
    /// is counted.
    pub fail_stopped: Mutex<bool>,
    pub stopped_attempts: Mutex<usize>,
    /// The agent binary it serves, and the agent's update reports.
    pub binary: Vec<u8>,
    pub updates: Mutex<Vec<AgentUpdateReport>>,
    /// Told when the agent reports an update FAILED.
    pub update_failed: tokio::sync::Notify,
}

impl Recorder {
    /// A control plane whose polls answer `answers`, in turn.
    pub fn answering(answers: impl IntoIterator<Item = Assignments>) -> Self {
        Recorder { answers: Mutex::new(answers.into_iter().collect()), ..Default::default() }
    }
    pub fn statuses(&self, arn: &str) -> Vec<String> {
        self.tasks
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.task.as_deref() == Some(arn))
            .filter_map(|r| r.status.clone())
            .collect()
    }
    pub fn last(&self, arn: &str, status: &str) -> Option<SubmitTaskStateChangeRequest> {
        self.tasks
            .lock()
            .unwrap()
            .iter()
            .rev()
            .find(|r| r.task.as_deref() == Some(arn) && r.status.as_deref() == Some(status))
            .cloned()
    }
}

impl ControlClient for Recorder {
    fn poll<'a>(&'a self, req: &'a PollRequest) -> BoxFuture<'a, ClientResult<Assignments>> {
        self.polls.lock().unwrap().push(req.clone());
        match self.answers.lock().unwrap().pop_front() {
            Some(a) => Box::pin(async move { Ok(a) }),
            None => Box::pin(std::future::pending()),
        }
    }
    fn submit_task<'a>(&'a self, req: &'a SubmitTaskStateChangeRequest) -> BoxFuture<'a, ClientResult<()>> {
        let mut r = Ok(());
        if req.status.as_deref() == Some("STOPPED") {
            *self.stopped_attempts.lock().unwrap() += 1;
            if *self.fail_stopped.lock().unwrap() {
                r = Err(ClientError::Transport("down".into()));
            }
        }
        if r.is_ok() {
            self.tasks.lock().unwrap().push(req.clone());
        }
        Box::pin(async move { r })
    }
    fn report_health<'a>(&'a self, req: &'a TaskHealthReport) -> BoxFuture<'a, ClientResult<()>> {
        self.health.lock().unwrap().push(req.clone());
        Box::pin(async { Ok(()) })
    }
    fn submit_attachments<'a>(
        &'a self,
        req: &'a SubmitAttachmentStateChangesRequest,
    ) -> BoxFuture<'a, ClientResult<()>> {
        self.attachments.lock().unwrap().push(req.clone());
        Box::pin(async { Ok(()) })
    }
    fn task_credentials<'a>(
        &'a self,
        req: &'a TaskCredentialsRequest,
    ) -> BoxFuture<'a, ClientResult<TaskCredentials>> {
        let n = {
            let mut asked = self.credentials_asked.lock().unwrap();
            asked.push(req.task_arn.clone());
            asked.len()
        };
        Box::pin(async move {
            Ok(TaskCredentials {
                role_arn: "arn:aws:iam::000000000000:role/app".into(),
                access_key_id: format!("ASIAEXAMPLE{n}"),
                secret_access_key: gantry_core::Secret::new("s"),
                session_token: gantry_core::Secret::new("t"),
                expiration: 1_700_000_000 + 3600,
            })
        })
    }
    fn report_update<'a>(&'a self, req: &'a AgentUpdateReport) -> BoxFuture<'a, ClientResult<()>> {
        self.updates.lock().unwrap().push(req.clone());
        if req.status == "FAILED" {
            self.update_failed.notify_one();
        }
        Box::pin(async { Ok(()) })
    }
    fn download_agent<'a>(&'a self, mut sink: Sink) -> BoxFuture<'a, ClientResult<(String, u64)>> {
        Box::pin(async move {
            for chunk in self.binary.chunks(3) {
                sink.write(chunk).unwrap();
            }
            Ok(sink.finish().unwrap())
        })
    }
}

/// The agent's configuration in the tests: node `NODE`, health checks every 500 ms, no logs,
/// metadata or credentials endpoints.
pub fn config() -> AgentConfig {
    AgentConfig {
        node: NODE.into(),
        pull_always: false,
        logs_dir: None,
        health_interval: Duration::from_millis(500),
        metadata_base: None,
        credentials: None,
    }
}

/// The agent under test: [`config`], the fake runtime and a fixed clock.
pub fn agent(rt: &Arc<FakeRuntime>, rec: &Arc<Recorder>) -> Arc<Agent<FakeRuntime, Recorder>> {
    Agent::new(rt.clone(), rec.clone(), Arc::new(FixedClock::new(Timestamp(1_700_000_000_000))), config())
}
