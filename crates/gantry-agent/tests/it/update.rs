//! The agent's side of UpdateContainerAgent against a control plane double: the announced
//! update is downloaded, checked against its digest, installed and re-executed, and each step
//! reported; a download that does not match fails without installing anything.

use crate::control::{NODE, Recorder, agent};
use gantry_agent::fake::FakeRuntime;
use gantry_agent::update::{Reexec, Updater};
use gantry_core::protocol::{AgentUpdate, Assignments};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

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
    let server = Arc::new(Recorder {
        binary: binary.to_vec(),
        ..Recorder::answering([Assignments { update: Some(announced), ..Default::default() }])
    });
    let agent = agent(&Arc::new(FakeRuntime::new()), &server);
    let reexec = Arc::new(Recorded::default());
    if updater {
        agent.set_updater(Updater { data_dir: dir.to_path_buf(), reexec: reexec.clone() });
    }
    let run = tokio::spawn(agent.clone().run());
    // Until the update ends (FAILED is its last report here).
    tokio::time::timeout(Duration::from_secs(10), server.update_failed.notified())
        .await
        .expect("the update to end");
    run.abort();
    let reports = server.updates.lock().unwrap().clone();
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
