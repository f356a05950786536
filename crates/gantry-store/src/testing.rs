//! For tests (the `testing` feature): a throwaway etcd member, Debian's `etcd` binary run on
//! free loopback ports with its data in a temporary directory, killed and removed on drop.

use crate::EtcdTarget;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

static NEXT: AtomicUsize = AtomicUsize::new(0);

/// A single-member etcd cluster of this process's own.
pub struct EtcdProcess {
    child: Option<Child>,
    dir: PathBuf,
    client: SocketAddr,
    peer: SocketAddr,
}

fn free_port() -> std::io::Result<SocketAddr> {
    TcpListener::bind("127.0.0.1:0")?.local_addr()
}

impl EtcdProcess {
    /// Starts `etcd` (from PATH, or `GANTRY_ETCD_BIN`) and waits until it answers its health
    /// check. Fails when there is no etcd binary or it does not come up within 20 seconds.
    pub fn start() -> std::io::Result<Self> {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("gantry-etcd-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        // A port another process took between our probe and etcd's bind makes etcd exit: try
        // again on other ports.
        let mut last = None;
        for _ in 0..5 {
            let mut p =
                EtcdProcess { child: None, dir: dir.clone(), client: free_port()?, peer: free_port()? };
            match p.spawn().and_then(|()| p.wait_healthy(Duration::from_secs(20))) {
                Ok(()) => return Ok(p),
                Err(e) => last = Some(e),
            }
            p.stop();
            let _ = std::fs::remove_dir_all(dir.join("data"));
        }
        Err(last.unwrap_or_else(|| std::io::Error::other("etcd did not start")))
    }

    fn spawn(&mut self) -> std::io::Result<()> {
        let bin = std::env::var_os("GANTRY_ETCD_BIN").unwrap_or_else(|| "etcd".into());
        let log = std::fs::OpenOptions::new().create(true).append(true).open(self.dir.join("etcd.log"))?;
        let (client, peer) = (format!("http://{}", self.client), format!("http://{}", self.peer));
        let child = Command::new(&bin)
            .args(["--name", "gantry-test", "--data-dir"])
            .arg(self.dir.join("data"))
            .args(["--listen-client-urls", &client, "--advertise-client-urls", &client])
            .args(["--listen-peer-urls", &peer, "--initial-advertise-peer-urls", &peer])
            .args(["--initial-cluster", &format!("gantry-test={peer}")])
            .args(["--max-txn-ops", "10000", "--logger", "zap", "--log-level", "warn"])
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .map_err(|e| {
                std::io::Error::new(e.kind(), format!("cannot run {}: {e}", bin.to_string_lossy()))
            })?;
        self.child = Some(child);
        Ok(())
    }

    fn wait_healthy(&mut self, within: Duration) -> std::io::Result<()> {
        use std::io::{Read, Write};
        let deadline = std::time::Instant::now() + within;
        loop {
            if let Some(child) = self.child.as_mut()
                && let Some(status) = child.try_wait()?
            {
                let log = std::fs::read_to_string(self.dir.join("etcd.log")).unwrap_or_default();
                let tail: String = log.lines().rev().take(5).collect::<Vec<_>>().join("\n");
                return Err(std::io::Error::other(format!("etcd exited ({status}): {tail}")));
            }
            let healthy =
                TcpStream::connect_timeout(&self.client, Duration::from_millis(200)).and_then(|mut s| {
                    s.set_read_timeout(Some(Duration::from_secs(1)))?;
                    s.write_all(b"GET /health HTTP/1.0\r\n\r\n")?;
                    let mut body = String::new();
                    s.read_to_string(&mut body)?;
                    Ok(body.contains("\"health\":\"true\""))
                });
            if healthy.unwrap_or(false) {
                return Ok(());
            }
            if std::time::Instant::now() > deadline {
                return Err(std::io::Error::other(format!("etcd at {} is not healthy", self.client)));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The member's client address.
    pub fn client_addr(&self) -> SocketAddr {
        self.client
    }

    /// `etcd://ADDR/ROOT`: a store under a root of its own on this member.
    pub fn target(&self, root: &str) -> EtcdTarget {
        EtcdTarget { endpoints: vec![format!("http://{}", self.client)], root: format!("/{root}/") }
    }

    /// Kills the member (SIGKILL), keeping its data.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the member again on the same ports and data, and waits until it is healthy.
    pub fn restart(&mut self) -> std::io::Result<()> {
        self.stop();
        self.spawn()?;
        self.wait_healthy(Duration::from_secs(20))
    }
}

impl Drop for EtcdProcess {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
