//! The agent's side of UpdateContainerAgent against a control plane double: the announced
//! update is downloaded, checked against its digest, installed and re-executed, and each step
//! reported; a download that does not match fails without installing anything.

use gantry_agent::agent::{Agent, AgentConfig};
use gantry_agent::client::{ClientResult, ControlClient};
use gantry_agent::fake::FakeRuntime;
use gantry_agent::runtime::BoxFuture;
use gantry_agent::update::{Reexec, Sink, Updater};
use gantry_core::protocol::{AgentUpdate, AgentUpdateReport, Assignments, PollRequest, TaskHealthReport};
use gantry_core::{FixedClock, Timestamp};
use gantry_model::*;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const NODE: &str = "arn:aws:ecs:us-east-1:000000000000:container-instance/c/0123";

/// Answers one poll with `update`, serves `binary` as the server's, records the reports.
struct Server {
    update: Mutex<Option<AgentUpdate>>,
    binary: Vec<u8>,
    reports: Mutex<Vec<AgentUpdateReport>>,
    /// Told when the agent reports FAILED (its last report here).
    failed: tokio::sync::Notify,
}

impl ControlClient for Server {
    fn poll<'a>(&'a self, _req: &'a PollRequest) -> BoxFuture<'a, ClientResult<Assignments>> {
        match self.update.lock().unwrap().take() {
            Some(u) => Box::pin(async move { Ok(Assignments { update: Some(u), ..Default::default() }) }),
            None => Box::pin(std::future::pending()),
        }
    }
    fn submit_task<'a>(&'a self, _req: &'a SubmitTaskStateChangeRequest) -> BoxFuture<'a, ClientResult<()>> {
        Box::pin(async { Ok(()) })
    }
    fn report_health<'a>(&'a self, _req: &'a TaskHealthReport) -> BoxFuture<'a, ClientResult<()>> {
        Box::pin(async { Ok(()) })
    }
    fn submit_attachments<'a>(
        &'a self,
        _req: &'a SubmitAttachmentStateChangesRequest,
    ) -> BoxFuture<'a, ClientResult<()>> {
        Box::pin(async { Ok(()) })
    }
    fn report_update<'a>(&'a self, req: &'a AgentUpdateReport) -> BoxFuture<'a, ClientResult<()>> {
        self.reports.lock().unwrap().push(req.clone());
        if req.status == "FAILED" {
            self.failed.notify_one();
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

/// Records what it was asked to execute, and fails as `execve` would on a missing loader.
#[derive(Default)]
struct Recorded(Mutex<Vec<PathBuf>>);

impl Reexec for Recorded {
    fn reexec(&self, binary: &Path) -> std::io::Error {
        self.0.lock().unwrap().push(binary.to_path_buf());
        std::io::Error::from_raw_os_error(8)
    }
}

fn data_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("gantry-agent-update-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

async fn run_update(
    binary: &[u8],
    announced: AgentUpdate,
    dir: &Path,
    updater: bool,
) -> (Vec<(String, Option<String>)>, Arc<Recorded>) {
    let server = Arc::new(Server {
        update: Mutex::new(Some(announced)),
        binary: binary.to_vec(),
        reports: Mutex::default(),
        failed: Default::default(),
    });
    let agent = Agent::new(
        Arc::new(FakeRuntime::new()),
        server.clone(),
        Arc::new(FixedClock::new(Timestamp(1_700_000_000_000))),
        AgentConfig {
            node: NODE.into(),
            pull_always: false,
            logs_dir: None,
            health_interval: Duration::from_millis(500),
            metadata_base: None,
            credentials: None,
        },
    );
    let reexec = Arc::new(Recorded::default());
    if updater {
        agent.set_updater(Updater { data_dir: dir.to_path_buf(), reexec: reexec.clone() });
    }
    let run = tokio::spawn(agent.clone().run());
    // Until the update ends (FAILED is its last report here).
    tokio::time::timeout(Duration::from_secs(10), server.failed.notified()).await.expect("the update to end");
    run.abort();
    let reports = server.reports.lock().unwrap().clone();
    assert!(reports.iter().all(|r| r.node == NODE), "{reports:?}");
    (reports.into_iter().map(|r| (r.status, r.reason)).collect(), reexec)
}

fn sha256_hex(bytes: &[u8]) -> String {
    let dir = data_dir("hash");
    std::fs::write(dir.join("f"), bytes).unwrap();
    let (h, _) = gantry_agent::update::file_sha256(&dir.join("f")).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    h
}

#[tokio::test]
async fn a_matching_download_is_installed_and_executed_in_the_agents_stead() {
    let dir = data_dir("ok");
    let binary = b"#!/bin/true new agent".to_vec();
    let announced = AgentUpdate { sha256: sha256_hex(&binary), size: binary.len() as u64 };
    let (reports, reexec) = run_update(&binary, announced, &dir, true).await;
    let statuses: Vec<&str> = reports.iter().map(|(s, _)| s.as_str()).collect();
    assert_eq!(statuses, ["STAGING", "STAGED", "UPDATING", "FAILED"]);
    // The double's exec fails, which the agent reports and survives.
    let why = reports[3].1.as_deref().unwrap();
    assert!(why.starts_with("cannot execute the updated agent: "), "{why}");
    let staged = dir.join("agent-update");
    assert_eq!(*reexec.0.lock().unwrap(), vec![staged.clone()]);
    assert_eq!(std::fs::read(&staged).unwrap(), binary);
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&staged).unwrap().permissions().mode() & 0o777, 0o755);
    assert!(!dir.join("agent-update.partial").exists());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn a_download_that_does_not_match_fails_and_installs_nothing() {
    let dir = data_dir("mismatch");
    let announced = AgentUpdate { sha256: sha256_hex(b"what the server runs"), size: 20 };
    let (reports, reexec) = run_update(b"what it serves", announced.clone(), &dir, true).await;
    let got = sha256_hex(b"what it serves");
    assert_eq!(
        reports,
        vec![
            ("STAGING".to_string(), None),
            (
                "FAILED".to_string(),
                Some(format!(
                    "the downloaded binary's SHA-256 is {got} (14 bytes), not the announced {} (20 bytes)",
                    announced.sha256
                ))
            ),
        ]
    );
    assert!(reexec.0.lock().unwrap().is_empty());
    assert!(!dir.join("agent-update").exists() && !dir.join("agent-update.partial").exists());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn an_agent_that_cannot_update_itself_says_so() {
    let dir = data_dir("none");
    let announced = AgentUpdate { sha256: sha256_hex(b"x"), size: 1 };
    let (reports, _) = run_update(b"x", announced, &dir, false).await;
    assert_eq!(
        reports,
        vec![(
            "FAILED".to_string(),
            Some("this agent cannot update itself (it is not a `gantry agent` process)".to_string())
        )]
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
