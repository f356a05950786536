//! ECS Exec's sessions: ExecuteCommand opens one, and the server pairs the caller's connection
//! on the session URL with the agent's, then relays the frames between them.
//!
//! - **ExecuteCommand** (after the front door authenticated and authorized it as any ECS call)
//!   asks the control plane where the command runs (`ControlPlane::execute_command`: ECS's
//!   checks), records the session's start, keeps a [`Session`] in the [`Hub`] with a one-time
//!   token from the OS's CSPRNG.
//!   The answer is ECS's shape; `streamUrl` is this server's `/_gantry/exec/v1/data-channel/ID`
//!   and `tokenValue` the token.
//! - **The caller** (`gantry exec`) sends `GET streamUrl` with `Upgrade: gantry-exec` and the
//!   token in `X-Gantry-Exec-Token` (never in the URL, which may be logged): a session's token
//!   is good once, for [`CLAIM_WITHIN`] after ExecuteCommand. Only then is the session queued
//!   for the task's node and its poll woken, with a TTY unless `X-Gantry-Exec-Tty: false`.
//! - **The agent** reads the request in its next poll answer and sends a signed
//!   `GET /_gantry/agent/v1/exec/ID?node=NODE`, upgraded the same way.
//! - The server relays bytes both ways as they come, reading the agent's frames only for the
//!   last one (exit code or error), and records the session's end. Both records go to
//!   CloudWatch Logs, group `/aws/ecs/exec/CLUSTER`, stream the session ID, as JSON events.
//!
//! Sessions live in the memory of the server that answered ExecuteCommand, and the caller's and
//! the agent's connections both reach it. On SQLite (one server) the request waits here for the
//! node's poll; with servers sharing a store (etcd) it waits in the store
//! (`ControlPlane::queue_exec`), naming this server's URL (`--advertise-url`), so that the
//! agent's poll on any server carries it and the agent connects here.

use crate::AppState;
use crate::auth::Caller;
use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use gantry_core::exec::{Decoder, Frame};
use gantry_core::protocol::ExecRequest;
use gantry_core::{EcsError, SecretGen};
use gantry_ecs::Ctx;
use gantry_ecs::ops::exec::ExecTarget;
use gantry_model::{ExecuteCommandRequest, ExecuteCommandResponse, Session as SessionShape};
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::oneshot;

/// The protocol a session's connections upgrade to.
pub const UPGRADE: &str = "gantry-exec";

/// The header that carries a session's token on the caller's connection.
pub const TOKEN_HEADER: &str = "x-gantry-exec-token";

/// The header by which the caller asks for no terminal (`false`); ECS's sessions have one.
pub const TTY_HEADER: &str = "x-gantry-exec-tty";

/// How long after ExecuteCommand the caller may connect, and the agent may join.
pub const CLAIM_WITHIN: Duration = Duration::from_secs(60);

/// Who ran what: what both of a session's records say.
#[derive(Debug, Clone)]
struct Record {
    account: String,
    region: String,
    principal: String,
    target: ExecTarget,
    command: String,
    session_id: String,
}

struct Session {
    token: gantry_core::Secret,
    record: Record,
    /// When ExecuteCommand opened it, by the control plane's clock (epoch milliseconds).
    opened_ms: i64,
    /// The agent's connection goes in here (taken by the agent's route) ...
    agent_tx: Option<oneshot::Sender<Upgraded>>,
    /// ... and comes out here (taken by the caller's route).
    agent_rx: Option<oneshot::Receiver<Upgraded>>,
}

/// The sessions of this server, and the exec requests waiting for their node's poll.
#[derive(Default)]
pub(crate) struct Hub {
    sessions: Mutex<HashMap<String, Session>>,
    queued: Mutex<HashMap<String, Vec<ExecRequest>>>,
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub").finish_non_exhaustive()
    }
}

impl Hub {
    /// The exec requests queued for `node`, handed out once.
    pub(crate) fn take_for(&self, node: &str) -> Vec<ExecRequest> {
        self.queued.lock().unwrap_or_else(|e| e.into_inner()).remove(node).unwrap_or_default()
    }

    fn open(&self, id: &str, session: Session) {
        let mut sessions = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        // Sessions nobody finished claiming are dropped (their agent or caller never came).
        let now = session.opened_ms;
        sessions.retain(|_, s| !expired(s, now));
        sessions.insert(id.to_string(), session);
    }

    /// Queues a session for its node's next poll.
    fn queue(&self, node: &str, req: ExecRequest) {
        self.queued.lock().unwrap_or_else(|e| e.into_inner()).entry(node.to_string()).or_default().push(req);
    }

    /// The caller's claim: with the right token, once, in time.
    fn claim(&self, id: &str, token: &str, now: i64) -> Option<(oneshot::Receiver<Upgraded>, Record)> {
        let mut sessions = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        let s = sessions.get_mut(id)?;
        if !constant_time_eq(s.token.expose().as_bytes(), token.as_bytes()) || expired(s, now) {
            return None;
        }
        let rx = s.agent_rx.take()?;
        let record = s.record.clone();
        if s.agent_tx.is_none() {
            sessions.remove(id);
        }
        Some((rx, record))
    }

    /// The agent's join: the session must be for its node.
    fn join(&self, id: &str, node: &str, now: i64) -> Option<oneshot::Sender<Upgraded>> {
        let mut sessions = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        let s = sessions.get_mut(id)?;
        if s.record.target.node != node || expired(s, now) {
            return None;
        }
        let tx = s.agent_tx.take()?;
        if s.agent_rx.is_none() {
            sessions.remove(id);
        }
        Some(tx)
    }
}

/// Whether a session is past the time its caller and agent had to connect.
fn expired(s: &Session, now: i64) -> bool {
    now - s.opened_ms > CLAIM_WITHIN.as_millis() as i64
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        match (b[i], b.get(i + 1).and_then(|&c| hex(c)), b.get(i + 2).and_then(|&c| hex(c))) {
            (b'%', Some(h), Some(l)) => {
                out.push((h * 16 + l) as u8);
                i += 3;
            }
            (c, _, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// ExecuteCommand: ECS's checks, the session opened, its start recorded, its node woken.
pub(crate) async fn execute_command(
    s: &AppState,
    ctx: &Ctx,
    caller: &Caller,
    body: &[u8],
    host: Option<&str>,
) -> Result<Vec<u8>, EcsError> {
    let req: ExecuteCommandRequest = crate::wire::parse("ExecuteCommand", body)?;
    let target = s.control.execute_command(ctx, &req)?;
    let session_id = format!("ecs-execute-command-{}", &s.control.ids().hex_id()[..17]);
    let mut raw = [0u8; 32];
    gantry_core::OsSecrets.fill(&mut raw);
    let token = hex(&raw);
    let record = Record {
        account: ctx.scope.account.clone(),
        region: ctx.scope.region.clone(),
        principal: caller.principal.arn.clone(),
        target: target.clone(),
        command: req.command.clone(),
        session_id: session_id.clone(),
    };
    // The start is recorded before the session can run: no record, no session.
    write_record(s, &record, start_event(&record)).await.map_err(|e| {
        EcsError::server(format!("The execute command failed because its session could not be recorded: {e}"))
    })?;
    let (tx, rx) = oneshot::channel();
    s.exec.open(
        &session_id,
        Session {
            token: gantry_core::Secret::new(token.clone()),
            record,
            opened_ms: s.control.clock().now().0,
            agent_tx: Some(tx),
            agent_rx: Some(rx),
        },
    );
    tracing::info!(session = %session_id, task = %target.task_arn, container = %target.container_name,
        principal = %caller.principal.arn, "exec session opened");
    let host = host.unwrap_or("127.0.0.1");
    crate::wire::render(&ExecuteCommandResponse {
        cluster_arn: Some(target.cluster_arn),
        container_arn: Some(target.container_arn),
        container_name: Some(target.container_name),
        interactive: req.interactive,
        session: Some(SessionShape {
            session_id: Some(session_id.clone()),
            stream_url: Some(format!(
                "http://{host}/_gantry/exec/v1/data-channel/{session_id}?role=publish_subscribe"
            )),
            token_value: Some(token),
        }),
        task_arn: Some(target.task_arn),
    })
}

fn start_event(r: &Record) -> serde_json::Value {
    serde_json::json!({
        "event": "SessionStarted",
        "sessionId": r.session_id,
        "principalArn": r.principal,
        "clusterArn": r.target.cluster_arn,
        "taskArn": r.target.task_arn,
        "containerName": r.target.container_name,
        "containerArn": r.target.container_arn,
        "command": r.command,
    })
}

/// One event of a session's record, durable (fsynced by CloudWatch Logs) when this returns.
async fn write_record(s: &AppState, r: &Record, mut event: serde_json::Value) -> Result<(), String> {
    let now = s.control.clock().now().0;
    event["time"] = serde_json::json!(now);
    let logs = s.config.logs.clone();
    let (account, region) = (r.account.clone(), r.region.clone());
    let group = format!("/aws/ecs/exec/{}", r.target.cluster_name);
    let stream = r.session_id.clone();
    tokio::task::spawn_blocking(move || {
        gantry_ports::LogSink::put_events(
            &*logs,
            &account,
            &region,
            &group,
            &stream,
            vec![(now, event.to_string())],
        )
    })
    .await
    .map_err(|e| e.to_string())?
}

fn refuse(status: StatusCode, kind: &str, message: String) -> Response {
    let body = serde_json::json!({"__type": kind, "message": message}).to_string();
    (status, [(axum::http::header::CONTENT_TYPE, "application/x-amz-json-1.1")], body).into_response()
}

fn switching() -> Response {
    Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header("connection", "upgrade")
        .header("upgrade", UPGRADE)
        .body(Body::empty())
        .unwrap_or_default()
}

fn wants_upgrade(headers: &HeaderMap) -> bool {
    headers.get("upgrade").and_then(|v| v.to_str().ok()).is_some_and(|v| v.eq_ignore_ascii_case(UPGRADE))
}

/// The caller's connection on the session URL.
pub(crate) async fn caller_stream(
    State(s): State<Arc<AppState>>,
    Path(session_id): Path<String>,
    mut req: Request,
) -> Response {
    if !wants_upgrade(req.headers()) {
        return refuse(
            StatusCode::BAD_REQUEST,
            "InvalidParameterException",
            format!("Upgrade: {UPGRADE} is required."),
        );
    }
    let token = req.headers().get(TOKEN_HEADER).and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
    let Some((agent_rx, record)) = s.exec.claim(&session_id, &token, s.control.clock().now().0) else {
        return refuse(
            StatusCode::FORBIDDEN,
            "AccessDeniedException",
            format!("The session {session_id} does not exist, has expired, or its token is not valid."),
        );
    };
    // The agent is called once the caller is there, with the terminal the caller asks for.
    let tty = req.headers().get(TTY_HEADER).and_then(|v| v.to_str().ok()) != Some("false");
    let t = &record.target;
    let exec = ExecRequest {
        session_id: session_id.clone(),
        task_arn: t.task_arn.clone(),
        container_name: t.container_name.clone(),
        command: t.command.clone(),
        tty,
        server_url: None,
    };
    // With other servers on the store, the node's agent may poll any of them: the session waits
    // in the store, naming this server, and every server's watch wakes the node's poll.
    let shared = s.control.agents().identity().filter(|i| i.shares_store());
    if let Some(me) = &shared {
        if let Err(e) = s.control.queue_exec(&t.node, exec, &me.url, CLAIM_WITHIN.as_millis() as i64).await {
            let (s, record, why) = (s.clone(), record.clone(), e.message.clone());
            tokio::spawn(async move {
                let _ = write_record(&s, &record, end_event(&record, None, Some(&why))).await;
            });
            return refuse(
                StatusCode::INTERNAL_SERVER_ERROR,
                "ServerException",
                format!("The session {session_id} could not be handed to its agent: {}", e.message),
            );
        }
    } else {
        s.exec.queue(&t.node, exec);
        // Not a change in the store (no watch sees it): this server's own poll of the node wakes.
        s.control.agents().wake(&t.node);
    }
    let on_upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        let caller = match on_upgrade.await {
            Ok(u) => TokioIo::new(u),
            Err(e) => {
                forget(&s, &record, shared.is_some()).await;
                let _ = write_record(
                    &s,
                    &record,
                    end_event(&record, None, Some(&format!("upgrade failed: {e}"))),
                )
                .await;
                return;
            }
        };
        let (exit, error) = match tokio::time::timeout(CLAIM_WITHIN, agent_rx).await {
            Ok(Ok(agent)) => relay(caller, TokioIo::new(agent)).await,
            _ => {
                let why = format!(
                    "The agent of the task {} did not join the session in time.",
                    record.target.task_arn
                );
                let mut caller = caller;
                let _ = caller.write_all(&Frame::Error(why.clone()).encode()).await;
                let _ = caller.shutdown().await;
                (None, Some(why))
            }
        };
        forget(&s, &record, shared.is_some()).await;
        if let Err(e) = write_record(&s, &record, end_event(&record, exit, error.as_deref())).await {
            tracing::error!(session = %record.session_id, error = %e, "the end of an exec session could not be recorded");
        }
        tracing::info!(session = %record.session_id, exit_code = ?exit, "exec session ended");
    });
    switching()
}

/// Once a session is over (or never ran), its request no longer waits in the store.
async fn forget(s: &AppState, r: &Record, shared: bool) {
    if shared && let Err(e) = s.control.forget_exec(&r.target.node, &r.session_id).await {
        tracing::warn!(session = %r.session_id, error = %e.message, "cannot remove a waiting exec session");
    }
}

fn end_event(r: &Record, exit: Option<i64>, error: Option<&str>) -> serde_json::Value {
    let mut e = start_event(r);
    e["event"] = serde_json::json!("SessionEnded");
    e["exitCode"] = serde_json::json!(exit);
    if let Some(why) = error {
        e["error"] = serde_json::json!(why);
    }
    e
}

/// Relays a session until the agent's side closes: the caller's bytes to the agent as they
/// are, the agent's to the caller, watching them for the last frame. The command's exit code,
/// or why there is none.
async fn relay(caller: TokioIo<Upgraded>, agent: TokioIo<Upgraded>) -> (Option<i64>, Option<String>) {
    let (mut caller_rd, mut caller_wr) = tokio::io::split(caller);
    let (mut agent_rd, mut agent_wr) = tokio::io::split(agent);
    let upstream = async {
        let _ = tokio::io::copy(&mut caller_rd, &mut agent_wr).await;
        let _ = agent_wr.shutdown().await;
        // The caller is gone; the downstream half finishes when the agent closes.
        std::future::pending::<()>().await;
    };
    let downstream = async {
        let mut decoder = Decoder::default();
        let mut buf = vec![0u8; 16 * 1024];
        let mut caller_gone = false;
        let mut last: (Option<i64>, Option<String>) =
            (None, Some("The agent closed the session without an exit code.".into()));
        loop {
            let n = match agent_rd.read(&mut buf).await {
                Ok(n) if n > 0 => n,
                _ => break,
            };
            decoder.push(&buf[..n]);
            loop {
                match decoder.next_frame() {
                    Ok(Some((Frame::Exit(code), _))) => last = (Some(code), None),
                    Ok(Some((Frame::Error(why), _))) => last = (None, Some(why)),
                    Ok(Some(_)) => {}
                    Ok(None) => break,
                    Err(e) => {
                        last = (None, Some(e.to_string()));
                        break;
                    }
                }
            }
            if !caller_gone && caller_wr.write_all(&buf[..n]).await.is_err() {
                caller_gone = true;
            }
        }
        let _ = caller_wr.shutdown().await;
        if caller_gone && last.1.is_some() {
            last.1 = Some("The caller disconnected.".into());
        }
        last
    };
    tokio::select! {
        () = upstream => unreachable!("the upstream half never finishes"),
        r = downstream => r,
    }
}

/// The agent's connection for a session on one of its node's tasks (signed like its other
/// calls).
pub(crate) async fn agent_stream(
    State(s): State<Arc<AppState>>,
    Path(session_id): Path<String>,
    method: Method,
    uri: Uri,
    mut req: Request,
) -> Response {
    let node = uri
        .query()
        .unwrap_or_default()
        .split('&')
        .find_map(|kv| kv.strip_prefix("node="))
        .map(percent_decode)
        .unwrap_or_default();
    if let Err(e) = crate::agent::authenticate(&s, &method, &uri, req.headers(), b"") {
        return refuse(StatusCode::FORBIDDEN, &e.code, e.message);
    }
    if !wants_upgrade(req.headers()) {
        return refuse(
            StatusCode::BAD_REQUEST,
            "InvalidParameterException",
            format!("Upgrade: {UPGRADE} is required."),
        );
    }
    let Some(tx) = s.exec.join(&session_id, &node, s.control.clock().now().0) else {
        return refuse(
            StatusCode::NOT_FOUND,
            "InvalidParameterException",
            format!("The session {session_id} is not waiting for node {node}."),
        );
    };
    let on_upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        if let Ok(u) = on_upgrade.await {
            let _ = tx.send(u);
        }
    });
    switching()
}
