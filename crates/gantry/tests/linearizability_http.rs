//! Linearizability through the servers' HTTP APIs (issue 18): three `gantry server` processes on
//! one 3-member etcd (each given every member), nine clients, client i on server i mod 3, each
//! with a connection of its own, doing at once SSM PutParameter with Overwrite (a value unique per
//! write: the register's blind writes, answered with the new Version) and GetParameter (its
//! reads) of three parameters. Every call and return is timed on one monotonic clock, and the
//! history is checked per parameter by the store tests' Wing & Gong checker
//! (`gantry-store/tests/it/checker.rs`, its register with blind writes).
//!
//! The store-level test (`gantry-store/tests/it/linearizability.rs`) checks the store's
//! compare-and-swap; this one checks what a client sees: the front door's read index before
//! every request, the service's read-modify-write, and the answer waiting for the writer's mirror.
//!
//! **It fails when reads are stale.** `mirror_reads_through_http_are_caught_stale` starts the same
//! servers with the hidden `--unsafe-stale-reads` (no read index: each server answers from its own
//! watch-fed mirror, however far behind the other servers' writes it is) and asserts the same
//! check rejects at least one round's history: a client's GetParameter through server B that
//! began after another client's PutParameter through server A had returned, answered before B's
//! mirror applied that write, returns the older value, and no order of the register's operations
//! explains it.

#[allow(dead_code)] // The compare-and-swap half of the model serves the store-level test.
#[path = "../../gantry-store/tests/it/checker.rs"]
mod checker;

use checker::{Input, Operation, Output, State};
use gantry_store::testing::EtcdCluster;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const PARAMETERS: [&str; 3] = ["a", "b", "c"];

/// One HTTP/1.1 connection to a server, opened again after an error.
struct Conn {
    addr: SocketAddr,
    stream: Option<BufReader<TcpStream>>,
}

impl Conn {
    fn new(addr: SocketAddr) -> Self {
        Conn { addr, stream: None }
    }

    fn request(&mut self, head: &str, body: &[u8]) -> Result<(u16, Vec<u8>), String> {
        let r = self.try_request(head, body);
        if r.is_err() {
            self.stream = None;
        }
        r
    }

    fn try_request(&mut self, head: &str, body: &[u8]) -> Result<(u16, Vec<u8>), String> {
        if self.stream.is_none() {
            let s =
                TcpStream::connect_timeout(&self.addr, Duration::from_secs(2)).map_err(|e| e.to_string())?;
            s.set_read_timeout(Some(Duration::from_secs(10))).map_err(|e| e.to_string())?;
            s.set_nodelay(true).map_err(|e| e.to_string())?;
            self.stream = Some(BufReader::new(s));
        }
        let stream = self.stream.as_mut().expect("connected above");
        let mut req =
            format!("{head}Host: {}\r\nContent-Length: {}\r\n\r\n", self.addr, body.len()).into_bytes();
        req.extend_from_slice(body);
        stream.get_mut().write_all(&req).map_err(|e| e.to_string())?;
        let mut line = String::new();
        stream.read_line(&mut line).map_err(|e| e.to_string())?;
        let status: u16 = line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| format!("status line {line:?}"))?;
        let mut length = None;
        loop {
            line.clear();
            stream.read_line(&mut line).map_err(|e| e.to_string())?;
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            if let Some((name, value)) = l.split_once(':')
                && name.eq_ignore_ascii_case("content-length")
            {
                length = value.trim().parse::<usize>().ok();
            }
        }
        let mut out = vec![0; length.ok_or("an answer without Content-Length")?];
        stream.read_exact(&mut out).map_err(|e| e.to_string())?;
        Ok((status, out))
    }

    /// An SSM operation (JSON 1.1), signed as `--auth open` takes it (well-formed, any key).
    fn ssm(&mut self, op: &str, body: &serde_json::Value) -> Result<(u16, serde_json::Value), String> {
        let head = format!(
            "POST / HTTP/1.1\r\nContent-Type: application/x-amz-json-1.1\r\nX-Amz-Target: AmazonSSM.{op}\r\n\
             X-Amz-Date: 20261205T000000Z\r\nAuthorization: AWS4-HMAC-SHA256 \
             Credential=AKIDLINEARIZABLE/20261205/us-east-1/ssm/aws4_request, SignedHeaders=host;x-amz-date, \
             Signature={}\r\n",
            "0".repeat(64)
        );
        let (status, body) = self.request(&head, body.to_string().as_bytes())?;
        let json = serde_json::from_slice(&body).map_err(|e| format!("{status}: {e}"))?;
        Ok((status, json))
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free port").port()
}

/// Three `gantry server` processes on one etcd root, killed and their directories removed on drop.
struct Servers {
    children: Vec<Child>,
    addrs: Vec<SocketAddr>,
    dir: PathBuf,
}

impl Servers {
    fn start(cluster: &EtcdCluster, root: &str, extra: &[&str]) -> Servers {
        let target = cluster.target(root);
        let url = format!(
            "etcd://{}/{root}",
            target.endpoints.iter().map(|e| e.trim_start_matches("http://")).collect::<Vec<_>>().join(",")
        );
        let dir = std::env::temp_dir().join(format!("gantry-lin-http-{}-{root}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let mut servers = Servers { children: Vec::new(), addrs: Vec::new(), dir };
        for i in 0..3 {
            let data = servers.dir.join(format!("s{i}"));
            std::fs::create_dir_all(&data).unwrap();
            let log = std::fs::File::create(servers.dir.join(format!("s{i}.log"))).unwrap();
            let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
            let mut child = Command::new(env!("CARGO_BIN_EXE_gantry"))
                .args(["server", "--listen", &addr.to_string(), "--auth", "open", "--store", &url])
                .arg("--data-dir")
                .arg(&data)
                .args(extra)
                .env_remove("GANTRY_STORE")
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(log.try_clone().unwrap())
                .spawn()
                .expect("the gantry binary runs");
            // One at a time: servers starting together on an empty root race to lay it out. A
            // server prints its banner once it listens (or exits: end of its output).
            let mut out = BufReader::new(child.stdout.take().unwrap());
            let mut line = String::new();
            while !line.contains("the AWS APIs are at") {
                line.clear();
                if out.read_line(&mut line).unwrap_or(0) == 0 {
                    let status = child.wait().unwrap();
                    panic!("server {i} exited with {status}; see {}", servers.dir.display());
                }
            }
            let mut log = log;
            std::thread::spawn(move || std::io::copy(&mut out, &mut log));
            servers.children.push(child);
            servers.addrs.push(addr);
            let health = Conn::new(addr).request("GET /_gantry/health HTTP/1.1\r\n", b"");
            assert!(matches!(health, Ok((200, _))), "server {i}'s health check: {health:?}");
        }
        servers
    }
}

impl Drop for Servers {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// One client's `ops` random GetParameter and PutParameter calls of [`PARAMETERS`] under
/// `prefix`, through the server at `addr`.
fn client(addr: SocketAddr, prefix: &str, id: usize, ops: usize, epoch: Instant) -> Vec<Operation> {
    let now = || epoch.elapsed().as_nanos() as u64;
    let mut rand = checker::client_rand(id);
    let mut conn = Conn::new(addr);
    let mut history = Vec::with_capacity(ops);
    for seq in 0..ops {
        let name = format!("{prefix}{}", PARAMETERS[rand(PARAMETERS.len() as u64) as usize]);
        if rand(2) == 0 {
            let call = now();
            let answer = conn.ssm("GetParameter", &serde_json::json!({"Name": name}));
            let ret = now();
            let output = match answer {
                Ok((200, body)) => {
                    let value: State = body["Parameter"]["Value"].as_str().and_then(|v| v.parse().ok());
                    assert!(value.is_some(), "GetParameter answered {body}");
                    Output::Read(value)
                }
                Ok((400, body))
                    if body["__type"].as_str().is_some_and(|t| t.ends_with("ParameterNotFound")) =>
                {
                    Output::Read(None)
                }
                _ => Output::Unknown,
            };
            history.push(Operation {
                client: id,
                key: name,
                input: Input::Read,
                output,
                call,
                ret: Some(ret),
            });
        } else {
            let new = ((id as u64) << 32) | seq as u64;
            let body = serde_json::json!({"Name": name, "Value": new.to_string(), "Type": "String", "Overwrite": true});
            let call = now();
            let answer = conn.ssm("PutParameter", &body);
            let (output, ret) = match answer {
                Ok((200, body)) if body["Version"].as_i64().is_some() => (Output::Written, Some(now())),
                // An error or no answer: it may or may not have taken effect.
                _ => (Output::Unknown, None),
            };
            history.push(Operation { client: id, key: name, input: Input::Write { new }, output, call, ret });
        }
    }
    history
}

/// Nine clients at once, client i on server i mod 3, on parameters under `prefix`.
fn record(servers: &Servers, prefix: &str, ops: usize) -> Vec<Operation> {
    let epoch = Instant::now();
    let threads: Vec<_> = (0..9)
        .map(|c| {
            let (addr, prefix) = (servers.addrs[c % servers.addrs.len()], prefix.to_string());
            std::thread::spawn(move || client(addr, &prefix, c, ops, epoch))
        })
        .collect();
    threads.into_iter().flat_map(|t| t.join().unwrap()).collect()
}

fn summary(what: &str, history: &[Operation], took: Duration) {
    let writes = history.iter().filter(|o| matches!(o.input, Input::Write { .. })).count();
    let unknown = history.iter().filter(|o| o.output == Output::Unknown).count();
    eprintln!(
        "{what}: {} operations through 3 servers in {took:?} ({writes} PutParameter, {} GetParameter, {unknown} unanswered)",
        history.len(),
        history.len() - writes
    );
}

#[test]
fn parameters_read_and_written_through_three_servers_are_linearizable() {
    let cluster = EtcdCluster::start(3).expect("etcd (Debian's etcd-server) must be installed");
    let servers = Servers::start(&cluster, "linhttp", &[]);
    for round in 0..2 {
        let started = Instant::now();
        let history = record(&servers, &format!("/lin/{round}/"), 100);
        summary(&format!("round {round}"), &history, started.elapsed());
        let unknown = history.iter().filter(|o| o.output == Output::Unknown).count();
        assert!(unknown * 20 < history.len(), "{unknown} of {} operations unanswered", history.len());
        // Every parameter was both written and read: the check is not vacuous.
        for p in PARAMETERS {
            let key = format!("/lin/{round}/{p}");
            let of =
                |w: bool| history.iter().any(|o| o.key == key && matches!(o.input, Input::Write { .. }) == w);
            assert!(of(true) && of(false), "{key} was not both written and read");
        }
        checker::check(&history).unwrap_or_else(|v| panic!("round {round}: {v}"));
    }
}

#[test]
fn mirror_reads_through_http_are_caught_stale() {
    let cluster = EtcdCluster::start(3).expect("etcd (Debian's etcd-server) must be installed");
    let servers = Servers::start(&cluster, "linstale", &["--unsafe-stale-reads"]);
    // Each round is a fresh race: at least one of many is caught (the first ends the test).
    let rounds = 10;
    for round in 0..rounds {
        let started = Instant::now();
        let history = record(&servers, &format!("/stale/{round}/"), 100);
        summary(&format!("stale reads, round {round}"), &history, started.elapsed());
        if let Err(v) = checker::check(&history) {
            eprintln!("caught in round {round}: {v}");
            return;
        }
    }
    panic!("no round of {rounds} through servers reading their mirrors was caught stale");
}
