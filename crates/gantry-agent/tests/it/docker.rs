//! `DockerRuntime` against a real Docker daemon.
//!
//! These need a running daemon and Debian's busybox-static: `tests/images/build.sh` builds the
//! one image they use (`gantry-test/busybox:latest`, no registry needed) and says what is missing.
//! Every container carries `gantry.test-run=<run id>`; a [`Harness`] removes a test's containers,
//! networks, volumes, imported images and host directories when it is dropped, pass or fail, and
//! the first test also sweeps what killed runs of this suite left behind. Nothing sleeps for a
//! fixed time: tests wait for a condition, with a bound.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use bollard::Docker;
use bollard::query_parameters::{
    ListContainersOptions, ListImagesOptions, ListNetworksOptions, ListVolumesOptions,
    RemoveContainerOptions, RemoveImageOptions, RemoveVolumeOptions,
};
use gantry_agent::docker::DockerRuntime;
use gantry_agent::runtime::{
    ContainerSpec, ContainerState, ContainerStatus, Health, HealthCheck, Mount, MountKind, Network,
    PortBinding, Protocol, Runtime, RuntimeError, Ulimit, labels,
};

const IMAGE: &str = "gantry-test/busybox:latest";
/// Names of everything a run creates start with this, then the creating process's PID.
const PREFIX: &str = "gantry-test-";
/// Images a run imports are named this, then the run id.
const IMPORT_PREFIX: &str = "gantry-test/import-";
const LONG: Duration = Duration::from_secs(30);

// ---- harness ----

/// Builds the test image once per process and sweeps leftovers of dead test processes.
fn setup() {
    static DONE: OnceLock<Result<(), String>> = OnceLock::new();
    let result = DONE.get_or_init(|| {
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/images/build.sh");
        let out = std::process::Command::new("bash")
            .arg(&script)
            .output()
            .map_err(|e| format!("running {}: {e}", script.display()))?;
        if !out.status.success() {
            return Err(format!(
                "{} failed ({}):\n{}{}",
                script.display(),
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        on_fresh_runtime(sweep_dead_runs());
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}

/// Runs a future on a runtime of its own, in a thread of its own: usable from `Drop` and from
/// inside another runtime. bollard connections belong to the runtime that opened them, so the
/// future connects its own client.
fn on_fresh_runtime<F>(future: F) -> F::Output
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a tokio runtime")
            .block_on(future)
    })
    .join()
    .expect("cleanup thread panicked")
}

fn raw_docker() -> Docker {
    Docker::connect_with_defaults().expect("docker client")
}

/// The PID in a run id or name made by [`Harness::new`], if that process is gone.
fn dead_pid(s: &str) -> bool {
    let pid = s.strip_prefix(PREFIX).unwrap_or(s).split('-').next().unwrap_or("");
    pid.parse::<u32>().is_ok_and(|pid| !PathBuf::from(format!("/proc/{pid}")).exists())
}

async fn sweep_dead_runs() {
    let docker = raw_docker();
    let filters = HashMap::from([("label".to_owned(), vec![labels::TEST_RUN.to_owned()])]);
    let options = ListContainersOptions { all: true, filters: Some(filters), ..Default::default() };
    for c in docker.list_containers(Some(options)).await.unwrap_or_default() {
        let run = c.labels.as_ref().and_then(|l| l.get(labels::TEST_RUN)).cloned().unwrap_or_default();
        if let (Some(id), true) = (c.id, dead_pid(&run)) {
            let options = RemoveContainerOptions { force: true, v: true, ..Default::default() };
            let _ = docker.remove_container(&id, Some(options)).await;
        }
    }
    let networks = docker.list_networks(None::<ListNetworksOptions>).await.unwrap_or_default();
    for name in networks.into_iter().filter_map(|n| n.name) {
        if name.starts_with(PREFIX) && dead_pid(&name) {
            let _ = docker.remove_network(&name).await;
        }
    }
    let volumes = docker.list_volumes(None::<ListVolumesOptions>).await.map(|v| v.volumes);
    for v in volumes.ok().flatten().unwrap_or_default() {
        if v.name.starts_with(PREFIX) && dead_pid(&v.name) {
            let _ = docker.remove_volume(&v.name, None::<RemoveVolumeOptions>).await;
        }
    }
    let images = docker.list_images(None::<ListImagesOptions>).await.unwrap_or_default();
    for tag in images.into_iter().flat_map(|i| i.repo_tags) {
        if tag.strip_prefix(IMPORT_PREFIX).is_some_and(dead_pid) {
            let _ = remove_image(&docker, &tag).await;
        }
    }
}

async fn remove_image(docker: &Docker, image: &str) -> Result<(), bollard::errors::Error> {
    let options = RemoveImageOptions { force: true, ..Default::default() };
    docker.remove_image(image, Some(options), None).await.map(|_| ())
}

/// One test's view of Docker, and what it must clean up.
struct Harness {
    rt: DockerRuntime,
    /// `<pid>-<n>-<test>`: unique per test, and tells a sweep whether its process is alive.
    run: String,
    networks: Mutex<Vec<String>>,
    volumes: Mutex<Vec<String>>,
    images: Mutex<Vec<String>>,
    dirs: Mutex<Vec<PathBuf>>,
}

impl Harness {
    async fn new(test: &str) -> Self {
        setup();
        static SEQ: AtomicUsize = AtomicUsize::new(0);
        let run = format!("{}-{}-{test}", std::process::id(), SEQ.fetch_add(1, Ordering::Relaxed));
        let rt = DockerRuntime::connect().await.expect("connect to Docker");
        Self {
            rt,
            run,
            networks: Mutex::default(),
            volumes: Mutex::default(),
            images: Mutex::default(),
            dirs: Mutex::default(),
        }
    }

    /// A unique engine-level name for this run.
    fn name(&self, suffix: &str) -> String {
        format!("{PREFIX}{}-{suffix}", self.run)
    }

    /// A spec for the test image, labelled for cleanup, running `sh -c script`.
    fn spec(&self, suffix: &str, script: &str) -> ContainerSpec {
        ContainerSpec {
            name: self.name(suffix),
            image: IMAGE.to_owned(),
            labels: BTreeMap::from([(labels::TEST_RUN.to_owned(), self.run.clone())]),
            command: Some(vec!["sh".into(), "-c".into(), script.into()]),
            ..Default::default()
        }
    }

    async fn run(&self, spec: &ContainerSpec) -> String {
        let id = self.rt.create(spec).await.unwrap_or_else(|e| panic!("create {}: {e}", spec.name));
        self.rt.start(&id).await.unwrap_or_else(|e| panic!("start {}: {e}", spec.name));
        id
    }

    /// Runs a one-shot container to its end: its exit code and its output.
    async fn run_to_end(&self, spec: &ContainerSpec) -> (i64, String) {
        let id = self.run(spec).await;
        let code = within(LONG, self.rt.wait(&id)).await.expect("wait");
        let logs = self.rt.logs(&id).await.expect("logs");
        (code, String::from_utf8_lossy(&logs).into_owned())
    }

    async fn state(&self, id: &str) -> ContainerState {
        self.rt.inspect(id).await.expect("inspect").expect("container exists")
    }

    fn network(&self, suffix: &str) -> String {
        let name = self.name(suffix);
        self.networks.lock().unwrap().push(name.clone());
        name
    }

    fn volume(&self, suffix: &str) -> String {
        let name = self.name(suffix);
        self.volumes.lock().unwrap().push(name.clone());
        name
    }

    fn image(&self) -> String {
        let image = format!("{IMPORT_PREFIX}{}:1", self.run);
        self.images.lock().unwrap().push(image.clone());
        image
    }

    fn host_dir(&self) -> PathBuf {
        let dir = std::env::temp_dir().join(self.name("dir"));
        std::fs::create_dir_all(&dir).expect("temp dir");
        self.dirs.lock().unwrap().push(dir.clone());
        dir
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        let run = self.run.clone();
        let networks = std::mem::take(&mut *self.networks.lock().unwrap());
        let volumes = std::mem::take(&mut *self.volumes.lock().unwrap());
        let images = std::mem::take(&mut *self.images.lock().unwrap());
        on_fresh_runtime(async move {
            // Through the runtime under test: list by label, then remove.
            let rt = DockerRuntime::connect().await.expect("connect to Docker for cleanup");
            for c in rt.list(labels::TEST_RUN, &run).await.unwrap_or_default() {
                let _ = rt.remove(&c.id).await;
            }
            let docker = raw_docker();
            for n in networks {
                let _ = docker.remove_network(&n).await;
            }
            for v in volumes {
                let _ = docker.remove_volume(&v, None::<RemoveVolumeOptions>).await;
            }
            for i in images {
                let _ = remove_image(&docker, &i).await;
            }
        });
        for dir in self.dirs.lock().unwrap().drain(..) {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// Fails the test if `future` takes longer than `limit`.
async fn within<F: Future>(limit: Duration, future: F) -> F::Output {
    tokio::time::timeout(limit, future).await.unwrap_or_else(|_| panic!("no answer within {limit:?}"))
}

/// Polls `probe` every 100 ms until it gives `Some`, for at most `limit`.
async fn poll_until<T, F, Fut>(what: &str, limit: Duration, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + limit;
    loop {
        if let Some(found) = probe().await {
            return found;
        }
        assert!(Instant::now() < deadline, "timed out after {limit:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A host TCP port that was free a moment ago.
fn free_port() -> u16 {
    std::net::TcpListener::bind("0.0.0.0:0").unwrap().local_addr().unwrap().port()
}

/// One HTTP/1.0 GET to 127.0.0.1:port; the whole response, or `None` if it could not connect.
fn http_get(port: u16) -> Option<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    stream.write_all(b"GET / HTTP/1.0\r\nHost: localhost\r\n\r\n").ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    // docker-proxy accepts before the container listens, then closes: not an answer yet.
    (!response.is_empty()).then_some(response)
}

const HTTPD: &str = "exec httpd -f -p 80 -h /www";
/// A shell loop that fetches a URL, retrying for up to 10 seconds.
fn fetch(url: &str) -> String {
    format!("for i in $(seq 100); do wget -q -O - {url} && exit 0; sleep 0.1; done; exit 1")
}

// ---- tests ----

#[tokio::test]
async fn create_start_inspect_running() {
    let h = Harness::new("running").await;
    let spec = h.spec("sleeper", "exec sleep 1000");
    let before = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap();
    let id = h.rt.create(&spec).await.unwrap();

    let created = h.state(&id).await;
    assert_eq!(created.status, ContainerStatus::Created);
    assert_eq!((created.started_at_ms, created.finished_at_ms, created.exit_code), (None, None, None));

    h.rt.start(&id).await.unwrap();
    let s = h.state(&id).await;
    assert_eq!(s.id, id);
    assert_eq!(s.name, spec.name);
    assert_eq!(s.image, IMAGE);
    assert_eq!(s.labels.get(labels::TEST_RUN), Some(&h.run));
    assert_eq!(s.status, ContainerStatus::Running);
    assert_eq!((s.exit_code, s.error.as_deref(), s.oom_killed), (None, None, false));
    let started = s.started_at_ms.expect("started_at");
    let before_ms = before.as_millis() as i64;
    assert!(
        (before_ms - 5_000..before_ms + 60_000).contains(&started),
        "started_at {started} vs {before_ms}"
    );
    assert_eq!(s.finished_at_ms, None);
    assert_eq!(s.health, None);
    assert!(s.ports.is_empty());
    assert!(s.ip_address.as_deref().is_some_and(|ip| ip.parse::<std::net::Ipv4Addr>().is_ok()), "{s:?}");
    // By name too.
    assert_eq!(h.state(&spec.name).await.id, id);
}

#[tokio::test]
async fn process_settings_reach_the_container() {
    let h = Harness::new("process").await;
    let mut spec = h.spec("env", "");
    spec.entrypoint = Some(vec!["/bin/sh".into(), "-c".into()]);
    spec.command = Some(vec![r#"echo "$GREETING"; pwd; hostname; id -u; cat /proc/1/comm"#.into()]);
    spec.env = vec![("GREETING".into(), "hello world".into())];
    spec.working_dir = Some("/tmp".into());
    spec.hostname = Some("gantry-host".into());
    spec.user = Some("65534".into());
    spec.init = true;
    let (code, out) = h.run_to_end(&spec).await;
    assert_eq!(code, 0, "{out}");
    // With `init`, PID 1 is Docker's init, not the shell.
    assert_eq!(out, "hello world\n/tmp\ngantry-host\n65534\ndocker-init\n");
}

#[tokio::test]
async fn spec_reaches_the_engine_config() {
    let h = Harness::new("config").await;
    let mut spec = h.spec("config", "true");
    spec.cpu_shares = Some(256);
    spec.nano_cpus = Some(500_000_000);
    spec.memory_mib = Some(96);
    spec.memory_reservation_mib = Some(48);
    spec.ulimits = vec![Ulimit { name: "nofile".into(), soft: 1024, hard: 2048 }];
    spec.cap_add = vec!["NET_ADMIN".into()];
    spec.cap_drop = vec!["MKNOD".into()];
    spec.read_only_rootfs = true;
    spec.extra_hosts = vec!["db:10.0.0.2".into()];
    spec.dns_servers = vec!["10.0.0.53".into()];
    spec.dns_search = vec!["svc.local".into()];
    spec.stop_timeout = Some(Duration::from_secs(7));
    spec.health_check = Some(HealthCheck {
        test: vec!["CMD-SHELL".into(), "true".into()],
        interval_s: 5,
        timeout_s: 2,
        retries: 4,
        start_period_s: 10,
    });
    let id = h.rt.create(&spec).await.unwrap();

    let doc = raw_docker().inspect_container(&id, None).await.unwrap();
    let host = doc.host_config.unwrap();
    assert_eq!((host.cpu_shares, host.nano_cpus), (Some(256), Some(500_000_000)));
    assert_eq!((host.memory, host.memory_reservation), (Some(96 << 20), Some(48 << 20)));
    let ulimit = &host.ulimits.unwrap()[0];
    assert_eq!((ulimit.name.as_deref(), ulimit.soft, ulimit.hard), (Some("nofile"), Some(1024), Some(2048)));
    assert_eq!(host.cap_add, Some(vec!["NET_ADMIN".into()]));
    assert_eq!(host.cap_drop, Some(vec!["MKNOD".into()]));
    assert_eq!(host.readonly_rootfs, Some(true));
    assert_eq!(host.extra_hosts, Some(vec!["db:10.0.0.2".into()]));
    assert_eq!(host.dns, Some(vec!["10.0.0.53".into()]));
    assert_eq!(host.dns_search, Some(vec!["svc.local".into()]));
    let config = doc.config.unwrap();
    assert_eq!(config.stop_timeout, Some(7));
    let hc = config.healthcheck.unwrap();
    assert_eq!(hc.test, Some(vec!["CMD-SHELL".into(), "true".into()]));
    assert_eq!(
        (hc.interval, hc.timeout, hc.retries, hc.start_period),
        (Some(5_000_000_000), Some(2_000_000_000), Some(4), Some(10_000_000_000))
    );
}

#[tokio::test]
async fn httpd_on_a_dynamic_host_port_answers() {
    let h = Harness::new("httpd").await;
    let mut spec = h.spec("web", HTTPD);
    spec.ports = vec![PortBinding { container_port: 80, host_port: None, protocol: Protocol::Tcp }];
    let id = h.run(&spec).await;

    let s = h.state(&id).await;
    assert_eq!(s.ports.len(), 1, "{:?}", s.ports);
    let port = &s.ports[0];
    assert_eq!((port.container_port, port.protocol, port.host_ip.as_str()), (80, Protocol::Tcp, "0.0.0.0"));
    assert_ne!(port.host_port, 0);

    let host_port = port.host_port;
    let response = poll_until("httpd to answer", LONG, || async move {
        tokio::task::spawn_blocking(move || http_get(host_port)).await.unwrap()
    })
    .await;
    assert!(response.starts_with("HTTP/1.") && response.contains(" 200 "), "{response}");
    assert!(response.contains("gantry test page"), "{response}");
}

#[tokio::test]
async fn wait_returns_the_exit_code() {
    let h = Harness::new("exit").await;
    let id = h.run(&h.spec("three", "exit 3")).await;
    assert_eq!(within(LONG, h.rt.wait(&id)).await, Ok(3));
    // Again, on a container that has already exited.
    assert_eq!(within(LONG, h.rt.wait(&id)).await, Ok(3));
    let s = h.state(&id).await;
    assert_eq!((s.status, s.exit_code, s.oom_killed), (ContainerStatus::Exited, Some(3), false));
    let (started, finished) = (s.started_at_ms.unwrap(), s.finished_at_ms.unwrap());
    // Docker stamps StartedAt after the process has started and FinishedAt from the exit event,
    // so a process this short can seem to finish a moment before it started.
    assert!(finished >= started - 1000, "finished at {finished}, long before starting at {started}");

    let id = h.run(&h.spec("zero", "true")).await;
    assert_eq!(within(LONG, h.rt.wait(&id)).await, Ok(0));
}

#[tokio::test]
async fn stop_kills_a_process_that_ignores_sigterm() {
    let h = Harness::new("stop").await;
    let id = h.run(&h.spec("stubborn", "trap '' TERM; sleep 1000")).await;
    assert_eq!(h.state(&id).await.status, ContainerStatus::Running);

    let began = Instant::now();
    within(LONG, h.rt.stop(&id, Duration::from_secs(1))).await.unwrap();
    let took = began.elapsed();
    assert!(took >= Duration::from_millis(900), "killed after {took:?}, before the timeout");
    let s = h.state(&id).await;
    assert_eq!((s.status, s.exit_code), (ContainerStatus::Exited, Some(137)));
    assert!(s.finished_at_ms.is_some());
    // Stopping a stopped container is fine.
    h.rt.stop(&id, Duration::from_secs(1)).await.unwrap();
}

#[tokio::test]
async fn stop_lets_a_well_behaved_process_exit() {
    let h = Harness::new("stopterm").await;
    let script = "trap 'exit 0' TERM; echo ready; while true; do sleep 0.1; done";
    let id = h.run(&h.spec("polite", script)).await;
    // As PID 1 the shell ignores SIGTERM until its trap is set.
    poll_until("the trap to be set", LONG, || async {
        h.rt.logs(&id).await.unwrap().starts_with(b"ready").then_some(())
    })
    .await;
    within(LONG, h.rt.stop(&id, Duration::from_secs(20))).await.unwrap();
    let s = h.state(&id).await;
    assert_eq!((s.status, s.exit_code), (ContainerStatus::Exited, Some(0)));
}

/// `wait` and `stop` may legitimately take longer than the client's per-request timeout.
#[tokio::test]
async fn wait_and_stop_outlive_the_request_timeout() {
    let h = Harness::new("slowcalls").await;
    let docker = raw_docker().negotiate_version().await.unwrap().with_timeout(Duration::from_secs(1));
    let rt = DockerRuntime::with_client(docker);

    let id = h.run(&h.spec("slow", "sleep 2; exit 4")).await;
    assert_eq!(within(LONG, rt.wait(&id)).await, Ok(4));

    let id = h.run(&h.spec("stubborn", "trap '' TERM; sleep 1000")).await;
    within(LONG, rt.stop(&id, Duration::from_secs(2))).await.unwrap();
    assert_eq!(h.state(&id).await.status, ContainerStatus::Exited);
}

#[tokio::test]
async fn health_checks_go_healthy_and_unhealthy() {
    let h = Harness::new("health").await;
    let check = |test: &[&str]| HealthCheck {
        test: test.iter().map(|s| s.to_string()).collect(),
        interval_s: 1,
        timeout_s: 1,
        retries: 1,
        start_period_s: 0,
    };
    let mut good = h.spec("good", "exec sleep 1000");
    good.health_check = Some(check(&["CMD-SHELL", "test -d /www"]));
    let mut bad = h.spec("bad", "exec sleep 1000");
    bad.health_check = Some(check(&["CMD", "false"]));
    let mut none = h.spec("none", "exec sleep 1000");
    none.health_check = Some(check(&["NONE"]));
    // Checked first after 5 minutes: starting until then.
    let mut slow = h.spec("slow", "exec sleep 1000");
    slow.health_check = Some(HealthCheck { interval_s: 300, ..check(&["CMD", "true"]) });
    let (good, bad, none) = (h.run(&good).await, h.run(&bad).await, h.run(&none).await);
    let slow = h.run(&slow).await;

    assert_eq!(h.state(&slow).await.health, Some(Health::Starting));
    for (id, want) in [(good, Health::Healthy), (bad, Health::Unhealthy)] {
        let (h, id) = (&h, &id);
        poll_until(&format!("{want:?}"), LONG, || async move {
            (h.state(id).await.health == Some(want)).then_some(())
        })
        .await;
    }
    assert_eq!(h.state(&none).await.health, None);
}

#[tokio::test]
async fn memory_limit_is_set_and_enforced() {
    let h = Harness::new("memory").await;
    let mut spec = h.spec(
        "limit",
        "cat /sys/fs/cgroup/memory.max 2>/dev/null || cat /sys/fs/cgroup/memory/memory.limit_in_bytes",
    );
    spec.memory_mib = Some(64);
    let (code, out) = h.run_to_end(&spec).await;
    assert_eq!((code, out.trim()), (0, "67108864"));

    // A single 64 MiB "line" that busybox tail must buffer, in 16 MiB.
    let mut spec = h.spec("oom", "head -c 64m /dev/zero | tail > /dev/null");
    spec.memory_mib = Some(16);
    let (code, _) = h.run_to_end(&spec).await;
    let s = h.state(&spec.name).await;
    assert_eq!((code, s.oom_killed, s.error.as_deref()), (137, true, Some("OOMKilled")), "{s:?}");
}

#[tokio::test]
async fn images_present_and_a_missing_one_fails_to_pull_fast() {
    let h = Harness::new("pull").await;
    assert_eq!(h.rt.image_present(IMAGE).await, Ok(true));
    let missing = "gantry-test/does-not-exist:nope";
    assert_eq!(h.rt.image_present(missing).await, Ok(false));

    let began = Instant::now();
    let result = within(LONG, h.rt.pull(missing, None)).await;
    assert!(matches!(&result, Err(RuntimeError::Pull(m)) if !m.is_empty()), "{result:?}");
    assert!(began.elapsed() < Duration::from_secs(20), "pull failed only after {:?}", began.elapsed());
    assert_eq!(h.rt.image_present(missing).await, Ok(false));
}

#[tokio::test]
async fn a_taken_host_port_fails_at_start_and_leaves_nothing_running() {
    let h = Harness::new("porttaken").await;
    let port = free_port();
    let ports = vec![PortBinding { container_port: 80, host_port: Some(port), protocol: Protocol::Tcp }];
    let mut holder = h.spec("holder", HTTPD);
    holder.ports = ports.clone();
    let holder_id = h.run(&holder).await;
    let bound = h.state(&holder_id).await.ports;
    assert_eq!(bound.iter().map(|p| p.host_port).collect::<Vec<_>>(), vec![port]);

    let mut second = h.spec("second", HTTPD);
    second.ports = ports;
    let id = h.rt.create(&second).await.expect("Docker checks ports only at start");
    match h.rt.start(&id).await {
        Err(RuntimeError::Start(m)) => {
            assert!(m.contains("already allocated") || m.contains("address already in use"), "{m}")
        }
        other => panic!("expected a start error, got {other:?}"),
    }
    let s = h.state(&id).await;
    assert_ne!(s.status, ContainerStatus::Running);
    assert!(s.ports.is_empty(), "{s:?}");

    h.rt.remove(&id).await.unwrap();
    let left: Vec<String> =
        h.rt.list(labels::TEST_RUN, &h.run).await.unwrap().into_iter().map(|c| c.name).collect();
    assert_eq!(left, vec![holder.name.clone()]);
    assert_eq!(h.state(&holder_id).await.status, ContainerStatus::Running);
}

#[tokio::test]
async fn a_failed_create_leaves_nothing_behind() {
    let h = Harness::new("badcreate").await;
    let mut spec = h.spec("tiny", "true");
    spec.memory_mib = Some(1);
    let result = h.rt.create(&spec).await;
    assert!(matches!(&result, Err(RuntimeError::Create(m)) if m.contains("memory")), "{result:?}");

    let mut spec = h.spec("noimage", "true");
    spec.image = "gantry-test/does-not-exist:nope".into();
    let result = h.rt.create(&spec).await;
    assert!(matches!(&result, Err(RuntimeError::Create(m)) if m.contains("No such image")), "{result:?}");

    let mut spec = h.spec("nofrom", "true");
    spec.volumes_from = vec![(h.name("no-such-container"), false)];
    let result = h.rt.create(&spec).await;
    assert!(matches!(&result, Err(RuntimeError::Create(m)) if m.contains("no-such-container")), "{result:?}");

    let spec = h.spec("dup", "true");
    h.rt.create(&spec).await.unwrap();
    let result = h.rt.create(&spec).await;
    assert!(matches!(&result, Err(RuntimeError::Create(m)) if m.contains("already in use")), "{result:?}");

    let left: Vec<String> =
        h.rt.list(labels::TEST_RUN, &h.run).await.unwrap().into_iter().map(|c| c.name).collect();
    assert_eq!(left, vec![spec.name]);
}

#[tokio::test]
async fn a_missing_network_fails_at_start() {
    let h = Harness::new("nonet").await;
    let mut spec = h.spec("nonet", "true");
    spec.network = Network::Named(h.name("no-such-network"));
    // Docker 20.10 checks the network only at start.
    let id = h.rt.create(&spec).await.unwrap();
    let result = h.rt.start(&id).await;
    assert!(matches!(&result, Err(RuntimeError::Start(m)) if m.contains("not found")), "{result:?}");
    assert_ne!(h.state(&id).await.status, ContainerStatus::Running);
}

#[tokio::test]
async fn list_by_label_includes_stopped_containers() {
    let h = Harness::new("list").await;
    let group = format!("{}-group", h.run);
    let with_group = |suffix: &str, value: &str| {
        let mut spec = h.spec(suffix, "exec sleep 1000");
        spec.labels.insert("gantry.test-group".into(), value.into());
        spec
    };
    let (a1, a2, b) = (with_group("a1", &group), with_group("a2", &group), with_group("b", "other"));
    h.run(&a1).await;
    h.rt.create(&a2).await.unwrap();
    h.rt.create(&b).await.unwrap();

    let found = h.rt.list("gantry.test-group", &group).await.unwrap();
    let seen: Vec<(&str, ContainerStatus)> = found.iter().map(|c| (c.name.as_str(), c.status)).collect();
    assert_eq!(
        seen,
        vec![(a1.name.as_str(), ContainerStatus::Running), (a2.name.as_str(), ContainerStatus::Created)]
    );
    assert_eq!(found[0].labels.get("gantry.test-group"), Some(&group));
    assert_eq!(h.rt.list(labels::TEST_RUN, &h.run).await.unwrap().len(), 3);
    assert_eq!(h.rt.list("gantry.test-group", "no-such-value").await.unwrap(), vec![]);
}

#[tokio::test]
async fn logs_hold_stdout_and_stderr() {
    let h = Harness::new("logs").await;
    let (code, out) = h.run_to_end(&h.spec("talker", "echo to-stdout; echo to-stderr >&2; echo again")).await;
    assert_eq!(code, 0);
    for line in ["to-stdout\n", "to-stderr\n", "again\n"] {
        assert!(out.contains(line), "{line:?} missing from {out:?}");
    }
}

#[tokio::test]
async fn containers_share_a_network_namespace() {
    let h = Harness::new("netns").await;
    let server = h.run(&h.spec("holder", HTTPD)).await;
    let mut client = h.spec("client", &fetch("http://127.0.0.1:80/"));
    client.network = Network::Container(server.clone());
    let (code, out) = h.run_to_end(&client).await;
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("gantry test page"), "{out}");
    // The client has no address of its own; it lives in the holder's namespace.
    assert!(h.state(&server).await.ip_address.is_some());
}

#[tokio::test]
async fn named_network_with_aliases() {
    let h = Harness::new("netnamed").await;
    let net = h.network("net");
    // Idempotent, also when called concurrently.
    let (a, b, c) =
        tokio::join!(h.rt.ensure_network(&net), h.rt.ensure_network(&net), h.rt.ensure_network(&net));
    assert_eq!((a, b, c), (Ok(()), Ok(()), Ok(())));
    h.rt.ensure_network(&net).await.unwrap();
    // Another process's runtime racing this one.
    let other = DockerRuntime::connect().await.unwrap();
    let (a, b) = tokio::join!(h.rt.ensure_network(&net), other.ensure_network(&net));
    assert_eq!((a, b), (Ok(()), Ok(())));
    let filters = HashMap::from([("name".to_owned(), vec![net.clone()])]);
    let found =
        raw_docker().list_networks(Some(ListNetworksOptions { filters: Some(filters) })).await.unwrap();
    let found: Vec<_> = found.into_iter().filter(|n| n.name.as_deref() == Some(&net)).collect();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].driver.as_deref(), Some("bridge"));

    let mut server = h.spec("server", HTTPD);
    server.network = Network::Named(net.clone());
    server.network_aliases = vec!["web".into()];
    let server_id = h.run(&server).await;
    let s = h.state(&server_id).await;
    assert!(s.ip_address.is_some(), "{s:?}");

    let mut client = h.spec("client", &fetch("http://web/"));
    client.network = Network::Named(net.clone());
    let (code, out) = h.run_to_end(&client).await;
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("gantry test page"), "{out}");

    // Containers on the default bridge cannot resolve the alias.
    let (code, _) = h.run_to_end(&h.spec("outsider", "wget -q -T 2 -O - http://web/")).await;
    assert_ne!(code, 0);
}

#[tokio::test]
async fn bind_mounts_volumes_and_volumes_from() {
    let h = Harness::new("mounts").await;
    let dir = h.host_dir();
    std::fs::write(dir.join("hello.txt"), "from the host\n").unwrap();
    let missing = dir.join("made-by-docker");
    let volume = h.volume("vol");

    let mut writer = h.spec(
        "writer",
        "cat /data/hello.txt > /vol/copy && ! touch /data/nope 2>/dev/null && touch /made/here && echo written",
    );
    writer.mounts = vec![
        Mount {
            kind: MountKind::Bind,
            source: dir.display().to_string(),
            target: "/data".into(),
            read_only: true,
        },
        Mount {
            kind: MountKind::Bind,
            source: missing.display().to_string(),
            target: "/made".into(),
            read_only: false,
        },
        Mount { kind: MountKind::Volume, source: volume.clone(), target: "/vol".into(), read_only: false },
    ];
    let (code, out) = h.run_to_end(&writer).await;
    assert_eq!((code, out.as_str()), (0, "written\n"));
    // A missing bind source is created, as ECS documents for host volumes.
    assert!(missing.join("here").exists());

    let mut reader = h.spec(
        "reader",
        "cat /vol/copy /data/hello.txt; touch /vol/x 2>/dev/null && echo writable || echo read-only",
    );
    reader.volumes_from = vec![(writer.name.clone(), true)];
    let (code, out) = h.run_to_end(&reader).await;
    assert_eq!((code, out.as_str()), (0, "from the host\nfrom the host\nread-only\n"));

    let mut rw_reader = h.spec("rwreader", "touch /vol/x && echo writable");
    rw_reader.volumes_from = vec![(writer.name.clone(), false)];
    let (code, out) = h.run_to_end(&rw_reader).await;
    assert_eq!((code, out.as_str()), (0, "writable\n"));
}

#[tokio::test]
async fn missing_containers() {
    let h = Harness::new("missing").await;
    let missing = h.name("never-created");
    assert_eq!(h.rt.remove(&missing).await, Ok(()));
    assert_eq!(h.rt.inspect(&missing).await, Ok(None));
    let not_found = Err(RuntimeError::NotFound(missing.clone()));
    assert_eq!(h.rt.start(&missing).await, not_found);
    assert_eq!(h.rt.stop(&missing, Duration::from_secs(1)).await, not_found);
    assert_eq!(h.rt.wait(&missing).await.map(|_| ()), not_found);
    assert_eq!(h.rt.logs(&missing).await.map(|_| ()), not_found);

    // Removing twice, and removing a running one.
    let id = h.run(&h.spec("gone", "exec sleep 1000")).await;
    h.rt.remove(&id).await.unwrap();
    h.rt.remove(&id).await.unwrap();
    assert_eq!(h.rt.inspect(&id).await, Ok(None));
}

#[tokio::test]
async fn an_imported_rootfs_runs() {
    let h = Harness::new("import").await;
    let image = h.image();
    let rootfs = gantry_agent::pause::pause_rootfs().expect("a pause executable for this architecture");
    assert_eq!(h.rt.image_present(&image).await, Ok(false));
    // (Each import makes a new image: importing again would leave this one dangling.)
    h.rt.import_image(&image, rootfs).await.unwrap();
    assert_eq!(h.rt.image_present(&image).await, Ok(true));

    let mut spec = h.spec("pause", "");
    spec.image = image.clone();
    spec.entrypoint = Some(vec!["/pause".into()]);
    spec.command = None;
    let id = h.run(&spec).await;
    let s = h.state(&id).await;
    assert_eq!((s.status, s.image.as_str()), (ContainerStatus::Running, image.as_str()));
    within(LONG, h.rt.stop(&id, Duration::from_secs(1))).await.unwrap();
    assert_eq!(h.state(&id).await.status, ContainerStatus::Exited);

    let result = h.rt.import_image(&h.image(), b"not a tar archive".to_vec()).await;
    assert!(result.is_err(), "{result:?}");
}

/// A running container can be renamed (how a ready namespace holder is given to a task); a
/// name in use, or a missing container, is refused.
#[tokio::test]
async fn a_running_container_is_renamed() {
    let h = Harness::new("rename").await;
    let id = h.run(&h.spec("before", "exec sleep 1000")).await;
    let other = h.run(&h.spec("taken", "exec sleep 1000")).await;
    h.rt.rename(&id, &h.name("after")).await.unwrap();
    let s = h.state(&id).await;
    assert_eq!((s.name, s.status), (h.name("after"), ContainerStatus::Running));
    let taken = h.rt.rename(&id, &h.name("taken")).await;
    assert!(matches!(taken, Err(RuntimeError::Create(_))), "{taken:?}");
    assert_eq!(h.state(&id).await.name, h.name("after"));
    h.rt.remove(&other).await.unwrap();
    h.rt.remove(&id).await.unwrap();
    let missing = h.rt.rename(&id, &h.name("again")).await;
    assert!(matches!(missing, Err(RuntimeError::NotFound(_))), "{missing:?}");
}

#[tokio::test]
async fn unreachable_daemon_is_unavailable() {
    let dir = std::env::temp_dir().join(format!("{PREFIX}{}-nosock", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // No socket at all.
    let result = DockerRuntime::connect_to(&format!("unix://{}/none.sock", dir.display())).await;
    assert!(matches!(&result, Err(RuntimeError::Unavailable(m)) if m.contains("none.sock")), "{result:?}");
    // A socket that nobody listens on any more.
    let stale = dir.join("stale.sock");
    drop(std::os::unix::net::UnixListener::bind(&stale).unwrap());
    let result = within(LONG, DockerRuntime::connect_to(&format!("unix://{}", stale.display()))).await;
    assert!(matches!(&result, Err(RuntimeError::Unavailable(_))), "{result:?}");
    // A tcp:// engine that refuses connections.
    let port = free_port();
    let result = within(LONG, DockerRuntime::connect_to(&format!("tcp://127.0.0.1:{port}"))).await;
    assert!(matches!(&result, Err(RuntimeError::Unavailable(_))), "{result:?}");
    let _ = std::fs::remove_dir_all(dir);
}
