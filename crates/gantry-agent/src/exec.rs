//! ECS Exec's two ends of a session's stream (the frames of `gantry_core::exec`): the agent's
//! ([`serve`]: runs the command in the task's container through the [`Runtime`] and relays its
//! stdin, output and exit code) and the caller's ([`attach`]: what `gantry exec` runs between
//! its terminal and the stream). The server in between only pairs the two connections.

use crate::client::ExecStream;
use crate::runtime::{ContainerStatus, ExecOutput, ExecSpec, Runtime, labels};
use futures_util::StreamExt;
use gantry_core::exec::{Decoder, Frame};
use gantry_core::protocol::ExecRequest;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// How long the agent waits for the engine to report an ended command's exit code (Docker
/// may answer "running" for a moment after the output ended).
const EXIT_CODE_WAIT: Duration = Duration::from_secs(5);

/// Runs an exec session on the agent's side: finds the task's container by its labels, starts
/// the command in it, relays the stream until the command ends, then sends its exit code (or
/// why it could not run) and closes the stream.
pub async fn serve<R: Runtime>(runtime: &R, req: &ExecRequest, mut io: ExecStream) {
    let last = match run(runtime, req, &mut io).await {
        Ok(code) => Frame::Exit(code),
        Err(why) => {
            tracing::info!(session = %req.session_id, task = %req.task_arn, reason = %why, "exec session failed");
            Frame::Error(why)
        }
    };
    let _ = io.write_all(&last.encode()).await;
    let _ = io.shutdown().await;
}

async fn run<R: Runtime>(runtime: &R, req: &ExecRequest, io: &mut ExecStream) -> Result<i64, String> {
    let containers = runtime.list(labels::TASK_ARN, &req.task_arn).await.map_err(|e| e.to_string())?;
    let id = containers
        .iter()
        .find(|c| {
            c.labels.get(labels::CONTAINER_NAME) == Some(&req.container_name)
                && c.status == ContainerStatus::Running
        })
        .map(|c| c.id.clone())
        .ok_or_else(|| {
            format!("The container {} of the task {} is not running.", req.container_name, req.task_arn)
        })?;
    let spec = ExecSpec { command: req.command.clone(), tty: req.tty };
    let mut p = runtime.exec_start(&id, &spec).await.map_err(|e| e.to_string())?;
    let (mut rd, mut wr) = tokio::io::split(io);
    let mut decoder = Decoder::default();
    let mut buf = vec![0u8; 16 * 1024];
    let mut caller_open = true;
    loop {
        tokio::select! {
            n = rd.read(&mut buf), if caller_open => {
                let n = n.unwrap_or(0);
                if n == 0 {
                    // The caller is gone: its stdin ends; the command's output has nowhere to go
                    // but it runs to its end, as a command whose terminal closed.
                    caller_open = false;
                    let _ = p.input.shutdown().await;
                    continue;
                }
                decoder.push(&buf[..n]);
                while let Some((frame, _)) = decoder.next_frame().map_err(|e| e.to_string())? {
                    match frame {
                        Frame::Stdin(b) => {
                            let _ = p.input.write_all(&b).await;
                            let _ = p.input.flush().await;
                        }
                        // A terminal has no end of input (its ^D is a byte like any other),
                        // and Docker ends a TTY session's output when its stdin closes.
                        Frame::StdinEof if req.tty => {}
                        Frame::StdinEof => {
                            let _ = p.input.shutdown().await;
                        }
                        Frame::Resize { cols, rows } => {
                            let _ = runtime.exec_resize(&p.id, cols, rows).await;
                        }
                        other => return Err(format!("unexpected frame from the caller: {other:?}")),
                    }
                }
            }
            out = p.output.next() => match out {
                Some(Ok(ExecOutput::Stdout(b))) => {
                    if caller_open {
                        wr.write_all(&Frame::Stdout(b).encode()).await.map_err(|e| e.to_string())?;
                    }
                }
                Some(Ok(ExecOutput::Stderr(b))) => {
                    if caller_open {
                        wr.write_all(&Frame::Stderr(b).encode()).await.map_err(|e| e.to_string())?;
                    }
                }
                Some(Err(e)) => return Err(e.to_string()),
                None => break,
            },
        }
    }
    let step = Duration::from_millis(20);
    for _ in 0..EXIT_CODE_WAIT.as_millis() / step.as_millis() {
        match runtime.exec_exit_code(&p.id).await.map_err(|e| e.to_string())? {
            Some(code) => return Ok(code),
            None => tokio::time::sleep(step).await,
        }
    }
    Err("the command's output ended but the engine reports it still running".into())
}

/// How a session ended for its caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ended {
    /// The command exited with this code.
    Exit(i64),
    /// The session could not run or broke, and why.
    Error(String),
}

/// The caller's side of a session: `stdin` (if any) goes to the command, terminal sizes from
/// `resizes` too; its output goes to `stdout` and `stderr` as it comes; returns how it ended.
pub async fn attach<I, O, E>(
    io: ExecStream,
    stdin: Option<I>,
    stdout: &mut O,
    stderr: &mut E,
    mut resizes: tokio::sync::mpsc::Receiver<(u16, u16)>,
) -> Ended
where
    I: AsyncRead + Unpin,
    O: AsyncWrite + Unpin,
    E: AsyncWrite + Unpin,
{
    let (mut rd, mut wr) = tokio::io::split(io);
    let mut stdin = stdin;
    let mut decoder = Decoder::default();
    let mut buf = vec![0u8; 16 * 1024];
    let mut inbuf = vec![0u8; 16 * 1024];
    let mut resizing = true;
    loop {
        tokio::select! {
            n = async { match stdin.as_mut() { Some(s) => s.read(&mut inbuf).await, None => std::future::pending().await } } => {
                let frame = match n {
                    Ok(n) if n > 0 => Frame::Stdin(inbuf[..n].to_vec()),
                    _ => {
                        stdin = None;
                        Frame::StdinEof
                    }
                };
                if wr.write_all(&frame.encode()).await.is_err() {
                    stdin = None;
                }
            }
            size = resizes.recv(), if resizing => match size {
                Some((cols, rows)) => {
                    let _ = wr.write_all(&Frame::Resize { cols, rows }.encode()).await;
                }
                None => resizing = false,
            },
            n = rd.read(&mut buf) => {
                let n = match n {
                    Ok(n) if n > 0 => n,
                    Ok(_) => return Ended::Error("the session ended without the command's exit code".into()),
                    Err(e) => return Ended::Error(format!("the session broke: {e}")),
                };
                decoder.push(&buf[..n]);
                loop {
                    match decoder.next_frame() {
                        Ok(Some((Frame::Stdout(b), _))) => {
                            let _ = stdout.write_all(&b).await;
                            let _ = stdout.flush().await;
                        }
                        Ok(Some((Frame::Stderr(b), _))) => {
                            let _ = stderr.write_all(&b).await;
                            let _ = stderr.flush().await;
                        }
                        Ok(Some((Frame::Exit(code), _))) => return Ended::Exit(code),
                        Ok(Some((Frame::Error(m), _))) => return Ended::Error(m),
                        Ok(Some((other, _))) => return Ended::Error(format!("unexpected frame from the agent: {other:?}")),
                        Ok(None) => break,
                        Err(e) => return Ended::Error(e.to_string()),
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake::FakeRuntime;
    use crate::runtime::ContainerSpec;
    use std::collections::BTreeMap;

    async fn container(rt: &FakeRuntime, task: &str, name: &str) {
        let spec = ContainerSpec {
            name: format!("{task}-{name}"),
            image: "img".into(),
            labels: BTreeMap::from([
                (labels::TASK_ARN.to_string(), task.to_string()),
                (labels::CONTAINER_NAME.to_string(), name.to_string()),
            ]),
            ..Default::default()
        };
        let id = rt.create(&spec).await.unwrap();
        rt.start(&id).await.unwrap();
    }

    /// Runs one session between the agent's side (on `rt`) and the caller's, over an in-memory
    /// pipe: what the caller printed, and how it ended.
    async fn session(
        rt: &FakeRuntime,
        command: &[&str],
        container: &str,
        input: &[u8],
    ) -> (String, String, Ended) {
        let (agent_end, caller_end) = tokio::io::duplex(4096);
        let req = ExecRequest {
            session_id: "s".into(),
            task_arn: "arn:task".into(),
            container_name: container.into(),
            command: command.iter().map(|s| s.to_string()).collect(),
            tty: false,
            server_url: None,
        };
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let (_tx, rx) = tokio::sync::mpsc::channel(1);
        let ((), ended) = tokio::join!(
            serve(rt, &req, Box::new(agent_end)),
            attach(Box::new(caller_end), Some(input), &mut out, &mut err, rx)
        );
        (String::from_utf8(out).unwrap(), String::from_utf8(err).unwrap(), ended)
    }

    #[tokio::test]
    async fn a_session_relays_output_stdin_and_the_exit_code() {
        let rt = FakeRuntime::simulated();
        container(&rt, "arn:task", "app").await;
        assert_eq!(
            session(&rt, &["echo", "hi"], "app", b"").await,
            ("hi\n".into(), String::new(), Ended::Exit(0))
        );
        assert_eq!(
            session(&rt, &["cat"], "app", b"from stdin\n").await,
            ("from stdin\n".into(), String::new(), Ended::Exit(0))
        );
        assert_eq!(session(&rt, &["false"], "app", b"").await.2, Ended::Exit(1));
        let (_, err, ended) = session(&rt, &["nope"], "app", b"").await;
        assert_eq!((err.as_str(), ended), ("exec: \"nope\": executable file not found\n", Ended::Exit(127)));
        assert_eq!(
            session(&rt, &["echo"], "other", b"").await.2,
            Ended::Error("The container other of the task arn:task is not running.".into())
        );
    }
}
