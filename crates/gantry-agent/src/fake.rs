//! An in-memory [`Runtime`] for tests and simulated fleets: containers are records, "running"
//! is a flag, and the test decides when a container exits or how its health goes.

use crate::runtime::*;
use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;

struct FakeContainer {
    state: ContainerState,
    spec: ContainerSpec,
    exited: watch::Sender<Option<i64>>,
}

/// The fake engine.
#[derive(Default)]
pub struct FakeRuntime {
    inner: Mutex<Inner>,
    /// Exec'd commands' exit codes by exec ID (`None` while running): their output streams
    /// set them when they end, so they are shared.
    execs: Arc<Mutex<BTreeMap<String, Option<i64>>>>,
}

#[derive(Default)]
struct Inner {
    containers: BTreeMap<String, FakeContainer>,
    /// The containers' names (an engine's names are unique).
    names: HashSet<String>,
    images: HashSet<String>,
    /// Images that any pull finds (others fail like a missing repository).
    pullable: HashSet<String>,
    next_id: u64,
    next_port: u16,
    /// Calls, in order, for assertions: "create NAME", "start ID", "stop ID", "remove ID", "pull IMAGE".
    calls: Vec<String>,
    /// Every image counts as present (simulated fleets), and calls are not recorded.
    simulated: bool,
    /// Containers that exit with this code as soon as they start.
    exit_on_start: BTreeMap<String, i64>,
    /// The load of containers by ECS container name: CPU cores and memory bytes.
    loads: BTreeMap<String, (f64, u64)>,
    /// How many times each container's stats were read (its counters advance one second each).
    stats_reads: BTreeMap<String, u64>,
}

impl FakeRuntime {
    pub fn new() -> Self {
        FakeRuntime {
            inner: Mutex::new(Inner { next_port: 49153, ..Default::default() }),
            execs: Arc::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A runtime for a simulated node: every image is present, nothing is recorded, containers
    /// run until stopped.
    pub fn simulated() -> Self {
        let f = Self::new();
        f.lock().simulated = true;
        f
    }

    /// Sets the load that containers named `container_name` (their ECS name) report in stats.
    pub fn set_load(&self, container_name: &str, cores: f64, memory_bytes: u64) {
        self.lock().loads.insert(container_name.to_string(), (cores, memory_bytes));
    }

    /// Makes an image present locally.
    pub fn add_image(&self, image: &str) {
        self.lock().images.insert(image.to_string());
    }

    /// Makes an image pullable.
    pub fn add_pullable(&self, image: &str) {
        self.lock().pullable.insert(image.to_string());
    }

    /// Containers named `engine_name` will exit with `code` right after they start.
    pub fn exit_on_start(&self, engine_name: &str, code: i64) {
        self.lock().exit_on_start.insert(engine_name.to_string(), code);
    }

    /// Makes a running container exit with `code` (as if its process ended, or `docker kill`).
    pub fn exit(&self, id_or_name: &str, code: i64) {
        let mut g = self.lock();
        if let Some(c) = find(&mut g, id_or_name) {
            finish(c, code);
        }
    }

    /// Removes a container behind the agent's back (as `docker rm -f` would).
    pub fn vanish(&self, id_or_name: &str) {
        let mut g = self.lock();
        let id = find(&mut g, id_or_name).map(|c| c.state.id.clone());
        if let Some(id) = id
            && let Some(c) = g.containers.remove(&id)
        {
            g.names.remove(&c.state.name);
            let _ = c.exited.send(Some(137));
        }
    }

    pub fn set_health(&self, id_or_name: &str, health: Health) {
        let mut g = self.lock();
        if let Some(c) = find(&mut g, id_or_name) {
            c.state.health = Some(health);
        }
    }

    /// Every container's state.
    pub fn containers(&self) -> Vec<ContainerState> {
        self.lock().containers.values().map(|c| c.state.clone()).collect()
    }

    pub fn spec(&self, id_or_name: &str) -> Option<ContainerSpec> {
        let mut g = self.lock();
        find(&mut g, id_or_name).map(|c| c.spec.clone())
    }

    pub fn calls(&self) -> Vec<String> {
        self.lock().calls.clone()
    }
}

fn find<'a>(g: &'a mut Inner, id_or_name: &str) -> Option<&'a mut FakeContainer> {
    g.containers.values_mut().find(|c| c.state.id == id_or_name || c.state.name == id_or_name)
}

fn finish(c: &mut FakeContainer, code: i64) {
    if c.state.status != ContainerStatus::Exited {
        c.state.status = ContainerStatus::Exited;
        c.state.exit_code = Some(code);
        c.state.finished_at_ms = Some(1);
        let _ = c.exited.send(Some(code));
    }
}

fn ready<'a, T: Send + 'a>(v: T) -> BoxFuture<'a, T> {
    Box::pin(async move { v })
}

impl Runtime for FakeRuntime {
    fn image_present<'a>(&'a self, image: &'a str) -> BoxFuture<'a, RuntimeResult<bool>> {
        let g = self.lock();
        ready(Ok(g.simulated || g.images.contains(image)))
    }

    fn pull<'a>(
        &'a self,
        image: &'a str,
        auth: Option<&'a gantry_core::protocol::RegistryAuth>,
    ) -> BoxFuture<'a, RuntimeResult<()>> {
        let mut g = self.lock();
        match auth {
            Some(a) => g.calls.push(format!("pull {image} as {}", a.username)),
            None => g.calls.push(format!("pull {image}")),
        }
        let r = if g.pullable.contains(image) {
            g.images.insert(image.to_string());
            Ok(())
        } else {
            Err(RuntimeError::Pull(format!("pull access denied for {image}, repository does not exist")))
        };
        ready(r)
    }

    fn import_image<'a>(&'a self, reference: &'a str, _rootfs: Vec<u8>) -> BoxFuture<'a, RuntimeResult<()>> {
        let mut g = self.lock();
        g.calls.push(format!("import {reference}"));
        g.images.insert(reference.to_string());
        ready(Ok(()))
    }

    fn ensure_network<'a>(&'a self, _name: &'a str) -> BoxFuture<'a, RuntimeResult<()>> {
        ready(Ok(()))
    }

    fn create<'a>(&'a self, spec: &'a ContainerSpec) -> BoxFuture<'a, RuntimeResult<String>> {
        let mut g = self.lock();
        if !g.simulated {
            g.calls.push(format!("create {}", spec.name));
        }
        if !g.simulated && !g.images.contains(&spec.image) {
            return ready(Err(RuntimeError::Create(format!("No such image: {}", spec.image))));
        }
        if g.names.contains(&spec.name) {
            return ready(Err(RuntimeError::Create(format!(
                "Conflict. The container name \"/{}\" is already in use",
                spec.name
            ))));
        }
        g.next_id += 1;
        let id = format!("{:064x}", g.next_id);
        let state = ContainerState {
            id: id.clone(),
            name: spec.name.clone(),
            image: spec.image.clone(),
            labels: Arc::new(spec.labels.clone()),
            status: ContainerStatus::Created,
            exit_code: None,
            error: None,
            oom_killed: false,
            started_at_ms: None,
            finished_at_ms: None,
            health: None,
            ports: vec![],
            ip_address: None,
        };
        let (tx, _) = watch::channel(None);
        g.names.insert(spec.name.clone());
        g.containers.insert(id.clone(), FakeContainer { state, spec: spec.clone(), exited: tx });
        ready(Ok(id))
    }

    fn rename<'a>(&'a self, id: &'a str, name: &'a str) -> BoxFuture<'a, RuntimeResult<()>> {
        let mut g = self.lock();
        if !g.simulated {
            g.calls.push(format!("rename {id} {name}"));
        }
        if g.names.contains(name) {
            return ready(Err(RuntimeError::Create(format!(
                "Conflict. The container name \"/{name}\" is already in use"
            ))));
        }
        let Some(c) = g.containers.get_mut(id) else {
            return ready(Err(RuntimeError::NotFound(id.to_string())));
        };
        let old = std::mem::replace(&mut c.state.name, name.to_string());
        c.spec.name = name.to_string();
        g.names.remove(&old);
        g.names.insert(name.to_string());
        ready(Ok(()))
    }

    fn start<'a>(&'a self, id: &'a str) -> BoxFuture<'a, RuntimeResult<()>> {
        let mut g = self.lock();
        if !g.simulated {
            g.calls.push(format!("start {id}"));
        }
        let mut port = g.next_port;
        let exit = {
            let Some(c) = g.containers.get_mut(id) else {
                return ready(Err(RuntimeError::NotFound(id.to_string())));
            };
            c.state.status = ContainerStatus::Running;
            c.state.started_at_ms = Some(1);
            c.state.health = c.spec.health_check.as_ref().map(|_| Health::Starting);
            if matches!(c.spec.network, Network::Named(_)) {
                c.state.ip_address = Some(format!("172.30.0.{}", port % 250 + 2));
            }
            c.state.ports = c
                .spec
                .ports
                .iter()
                .map(|p| BoundPort {
                    container_port: p.container_port,
                    host_port: p.host_port.unwrap_or_else(|| {
                        port += 1;
                        port
                    }),
                    protocol: p.protocol,
                    host_ip: "0.0.0.0".into(),
                })
                .collect();
            c.state.name.clone()
        };
        g.next_port = port;
        if let Some(code) = g.exit_on_start.get(&exit).copied()
            && let Some(c) = g.containers.get_mut(id)
        {
            finish(c, code);
        }
        ready(Ok(()))
    }

    fn stop<'a>(&'a self, id: &'a str, _timeout: Duration) -> BoxFuture<'a, RuntimeResult<()>> {
        let mut g = self.lock();
        if !g.simulated {
            g.calls.push(format!("stop {id}"));
        }
        if let Some(c) = g.containers.get_mut(id) {
            finish(c, 143);
        }
        ready(Ok(()))
    }

    fn remove<'a>(&'a self, id: &'a str) -> BoxFuture<'a, RuntimeResult<()>> {
        let mut g = self.lock();
        if !g.simulated {
            g.calls.push(format!("remove {id}"));
        }
        if let Some(c) = g.containers.remove(id) {
            g.names.remove(&c.state.name);
            let _ = c.exited.send(Some(c.state.exit_code.unwrap_or(137)));
        }
        ready(Ok(()))
    }

    fn inspect<'a>(&'a self, id: &'a str) -> BoxFuture<'a, RuntimeResult<Option<ContainerState>>> {
        ready(Ok(self.lock().containers.get(id).map(|c| c.state.clone())))
    }

    fn wait<'a>(&'a self, id: &'a str) -> BoxFuture<'a, RuntimeResult<i64>> {
        let rx = self.lock().containers.get(id).map(|c| c.exited.subscribe());
        Box::pin(async move {
            let Some(mut rx) = rx else {
                return Err(RuntimeError::NotFound(id.to_string()));
            };
            loop {
                if let Some(code) = *rx.borrow_and_update() {
                    return Ok(code);
                }
                if rx.changed().await.is_err() {
                    return Err(RuntimeError::NotFound(id.to_string()));
                }
            }
        })
    }

    fn list<'a>(
        &'a self,
        label: &'a str,
        value: &'a str,
    ) -> BoxFuture<'a, RuntimeResult<Vec<ContainerState>>> {
        let g = self.lock();
        ready(Ok(g
            .containers
            .values()
            .filter(|c| c.state.labels.get(label).map(String::as_str) == Some(value))
            .map(|c| c.state.clone())
            .collect()))
    }

    /// Deterministic stats: each read is one more second of a 2-CPU host, in which the container
    /// used its load's cores (see [`FakeRuntime::set_load`]; idle and 1 MiB by default).
    fn stats<'a>(&'a self, id: &'a str) -> BoxFuture<'a, RuntimeResult<serde_json::Value>> {
        let mut g = self.lock();
        let Some(name) = g
            .containers
            .get(id)
            .map(|c| c.state.labels.get(labels::CONTAINER_NAME).cloned().unwrap_or_default())
        else {
            return ready(Err(RuntimeError::NotFound(id.to_string())));
        };
        let (cores, memory) = g.loads.get(&name).copied().unwrap_or((0.0, 1 << 20));
        let reads = g.stats_reads.entry(id.to_string()).or_insert(0);
        *reads += 1;
        let n = *reads as f64;
        let ns = 1e9;
        ready(Ok(serde_json::json!({
            "id": id,
            "memory_stats": {"usage": memory},
            "cpu_stats": {"cpu_usage": {"total_usage": n * cores * ns}, "system_cpu_usage": n * 2.0 * ns, "online_cpus": 2},
            "precpu_stats": {"cpu_usage": {"total_usage": (n - 1.0) * cores * ns}, "system_cpu_usage": (n - 1.0) * 2.0 * ns},
        })))
    }

    fn logs<'a>(&'a self, id: &'a str) -> BoxFuture<'a, RuntimeResult<Vec<u8>>> {
        ready(Ok(format!("logs of {id}\n").into_bytes()))
    }

    /// A tiny shell of its own: `echo ARGS` prints them, `cat` copies stdin to stdout until it
    /// closes, `false` exits 1; any other program is not found (exit 127, as in Docker).
    fn exec_start<'a>(
        &'a self,
        id: &'a str,
        spec: &'a ExecSpec,
    ) -> BoxFuture<'a, RuntimeResult<ExecProcess>> {
        use futures_util::StreamExt;
        let running = {
            let g = self.lock();
            g.containers.get(id).map(|c| c.state.status == ContainerStatus::Running)
        };
        match running {
            None => return ready(Err(RuntimeError::NotFound(id.to_string()))),
            Some(false) => {
                return ready(Err(RuntimeError::Unavailable(format!("container {id} is not running"))));
            }
            Some(true) => {}
        }
        let exec_id = {
            let mut execs = self.execs.lock().unwrap_or_else(|e| e.into_inner());
            let exec_id = format!("exec-{}", execs.len() + 1);
            execs.insert(exec_id.clone(), None);
            exec_id
        };
        let (stdin, reader) = tokio::io::duplex(64 * 1024);
        let program = spec.command.first().cloned().unwrap_or_default();
        let (fixed, code): (Option<ExecOutput>, i64) = match program.as_str() {
            "echo" => {
                (Some(ExecOutput::Stdout(format!("{}\n", spec.command[1..].join(" ")).into_bytes())), 0)
            }
            "cat" => (None, 0),
            "false" => (Some(ExecOutput::Stdout(Vec::new())), 1),
            other => (
                Some(ExecOutput::Stderr(
                    format!("exec: \"{other}\": executable file not found\n").into_bytes(),
                )),
                127,
            ),
        };
        let execs = self.execs.clone();
        let done_id = exec_id.clone();
        let finish = move || {
            execs.lock().unwrap_or_else(|e| e.into_inner()).insert(done_id.clone(), Some(code));
        };
        let output = match fixed {
            Some(out) => {
                finish();
                futures_util::stream::iter([Ok(out)]).boxed()
            }
            None => futures_util::stream::unfold((reader, Some(finish)), |(mut r, mut finish)| async move {
                use tokio::io::AsyncReadExt;
                let mut buf = vec![0u8; 8192];
                match r.read(&mut buf).await {
                    Ok(n) if n > 0 => {
                        buf.truncate(n);
                        Some((Ok(ExecOutput::Stdout(buf)), (r, finish)))
                    }
                    _ => {
                        if let Some(f) = finish.take() {
                            f();
                        }
                        None
                    }
                }
            })
            .boxed(),
        };
        ready(Ok(ExecProcess { id: exec_id, input: Box::pin(stdin), output }))
    }

    fn exec_exit_code<'a>(&'a self, exec_id: &'a str) -> BoxFuture<'a, RuntimeResult<Option<i64>>> {
        let execs = self.execs.lock().unwrap_or_else(|e| e.into_inner());
        ready(execs.get(exec_id).copied().ok_or_else(|| RuntimeError::NotFound(exec_id.to_string())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn names_are_unique_until_the_container_is_removed() {
        let rt = FakeRuntime::simulated();
        let spec = ContainerSpec { name: "web".into(), image: "img".into(), ..Default::default() };
        let id = rt.create(&spec).await.unwrap();
        let again = rt.create(&spec).await;
        assert!(
            matches!(&again, Err(RuntimeError::Create(m)) if m.contains("\"/web\" is already in use")),
            "{again:?}"
        );
        rt.create(&ContainerSpec { name: "api".into(), ..spec.clone() }).await.unwrap();
        rt.remove(&id).await.unwrap();
        let id = rt.create(&spec).await.unwrap();
        rt.vanish(&id);
        rt.create(&spec).await.unwrap();
    }
}
