//! For tests (the `testing` feature): a throwaway etcd member or cluster, Debian's `etcd` run on
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

/// A multi-member etcd cluster of this process's own (Debian's `etcd`, each member on free
/// loopback ports with its data in a temporary directory), killed and removed on drop.
pub struct EtcdCluster {
    members: Vec<EtcdProcess>,
    initial: String,
}

impl EtcdCluster {
    /// Starts `n` members and waits until every one answers its health check.
    pub fn start(n: usize) -> std::io::Result<Self> {
        let mut last = None;
        // A port another process took between our probe and etcd's bind: try other ports.
        for _ in 0..3 {
            let id = NEXT.fetch_add(1, Ordering::Relaxed);
            let mut members = Vec::new();
            for i in 0..n {
                let dir = std::env::temp_dir().join(format!("gantry-etcd-{}-{id}-m{i}", std::process::id()));
                let _ = std::fs::remove_dir_all(&dir);
                std::fs::create_dir_all(&dir)?;
                members.push(EtcdProcess { child: None, dir, client: free_port()?, peer: free_port()? });
            }
            let initial: Vec<String> =
                members.iter().enumerate().map(|(i, m)| format!("m{i}=http://{}", m.peer)).collect();
            let mut cluster = EtcdCluster { members, initial: initial.join(",") };
            let started = (0..n).try_for_each(|i| cluster.spawn(i)).and_then(|()| {
                cluster.members.iter_mut().try_for_each(|m| m.wait_healthy(Duration::from_secs(30)))
            });
            match started {
                Ok(()) => return Ok(cluster),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| std::io::Error::other("the etcd cluster did not start")))
    }

    fn spawn(&mut self, i: usize) -> std::io::Result<()> {
        let bin = std::env::var_os("GANTRY_ETCD_BIN").unwrap_or_else(|| "etcd".into());
        let m = &mut self.members[i];
        let log = std::fs::OpenOptions::new().create(true).append(true).open(m.dir.join("etcd.log"))?;
        let (client, peer) = (format!("http://{}", m.client), format!("http://{}", m.peer));
        let child = Command::new(&bin)
            .args(["--name", &format!("m{i}"), "--data-dir"])
            .arg(m.dir.join("data"))
            .args(["--listen-client-urls", &client, "--advertise-client-urls", &client])
            .args(["--listen-peer-urls", &peer, "--initial-advertise-peer-urls", &peer])
            .args(["--initial-cluster", &self.initial, "--initial-cluster-state", "new"])
            .args(["--initial-cluster-token", &format!("gantry-test-{}", std::process::id())])
            .args(["--max-txn-ops", "10000", "--logger", "zap", "--log-level", "warn"])
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .map_err(|e| {
                std::io::Error::new(e.kind(), format!("cannot run {}: {e}", bin.to_string_lossy()))
            })?;
        m.child = Some(child);
        Ok(())
    }

    /// How many members.
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// Whether the cluster has no members (never: `start` makes at least one).
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// A store under a root of its own on every member.
    pub fn target(&self, root: &str) -> EtcdTarget {
        let endpoints = self.members.iter().map(|m| format!("http://{}", m.client)).collect();
        EtcdTarget { endpoints, root: format!("/{root}/") }
    }

    /// A store under a root of its own, talking to member `i` only.
    pub fn member_target(&self, i: usize, root: &str) -> EtcdTarget {
        self.members[i].target(root)
    }

    /// Kills member `i` (SIGKILL), keeping its data.
    pub fn stop(&mut self, i: usize) {
        self.members[i].stop();
    }

    /// Starts member `i` again on its ports and data, and waits until it is healthy.
    pub fn restart(&mut self, i: usize) -> std::io::Result<()> {
        self.members[i].stop();
        self.spawn(i)?;
        self.members[i].wait_healthy(Duration::from_secs(30))
    }
}
