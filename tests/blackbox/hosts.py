"""Several hosts on this machine, each in a network namespace of its own (needs root).

    root namespace: bridge gbrTAG, 10.231.X.1/24 (the server listens there)
      └─ veth gvNTAG ── namespace gantry-TAG-hN: eth0 10.231.X.(10+N)/24, default via .1,
                                                  its own dockerd, its own `gantry agent`
                                                  with --task-subnet 10.232.X.(32*N)/27
                                                  (or, Docker-free: `gantry sim`)

TAG (random hex) and X (a /24 pair that no route of this machine uses) keep harnesses that run
at the same time apart. Each dockerd runs entered into the namespace's network only
(`nsenter --net`, not `ip netns exec`, which remounts /sys and hides the cgroup mounts dockerd
needs) with its own data root, exec root and socket, and gets the test image from the host's
engine (`docker save | docker load`). `Hosts.close()` removes everything it made (containers,
engines, their directories, namespaces, links, the bridge and its FORWARD rule), also after a
failure, and keeps going past what fails.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import time
from pathlib import Path

from harness import TEST_IMAGE, GantryAgent, GantryServer, gantry_bin, wait_for


def run(*args: str, check: bool = True, timeout: float = 60, **kw) -> subprocess.CompletedProcess:
    p = subprocess.run(list(args), capture_output=True, text=True, timeout=timeout, **kw)
    if check and p.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed ({p.returncode}): {p.stderr.strip()}")
    return p


def missing_prerequisites(docker: bool = True) -> str | None:
    """Why hosts cannot be made here (with a Docker engine each, or Docker-free), or None."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    for tool in ("ip", "iptables", "nsenter", *(("dockerd", "docker", "curl") if docker else ())):
        if not shutil.which(tool):
            return f"`{tool}` is not installed (scripts/prereqs.sh installs it)"
    return None


class Host:
    """One namespace with its address, its Docker engine and (once started) its agent."""

    def __init__(self, hosts: "Hosts", n: int):
        self.hosts = hosts
        self.n = n
        self.netns = f"gantry-{hosts.tag}-h{n}"
        self.veth = f"gv{n}{hosts.tag}"              # the root namespace's end
        self.address = f"10.231.{hosts.x}.{10 + n}"
        self.task_subnet = f"10.232.{hosts.x}.{32 * n}/27"
        self.run_dir = Path(f"/run/gantry-{hosts.tag}-h{n}")
        self.data_root = Path(f"/var/lib/gantry-hosts/{hosts.tag}-h{n}")
        self.docker_host = f"unix://{self.run_dir}/docker.sock"
        self.dockerd: subprocess.Popen | None = None
        self.agent: GantryAgent | None = None

    @property
    def enter(self) -> tuple[str, ...]:
        """The command prefix that runs a command in this host's network namespace."""
        return ("nsenter", f"--net=/run/netns/{self.netns}")

    def exec(self, *args: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess:
        return run(*self.enter, *args, check=check, timeout=timeout)

    def docker(self, *args: str, check: bool = True, timeout: float = 60) -> str:
        env = dict(os.environ, DOCKER_HOST=self.docker_host)
        return run("/usr/bin/docker", *args, check=check, timeout=timeout, env=env).stdout

    def _up(self):
        h = self.hosts
        run("ip", "netns", "add", self.netns)
        run("ip", "link", "add", self.veth, "type", "veth", "peer", "name", "eth0", "netns", self.netns)
        run("ip", "link", "set", self.veth, "master", h.bridge, "up")
        run("ip", "-n", self.netns, "link", "set", "lo", "up")
        run("ip", "-n", self.netns, "addr", "add", f"{self.address}/24", "dev", "eth0")
        run("ip", "-n", self.netns, "link", "set", "eth0", "up")
        run("ip", "-n", self.netns, "route", "add", "default", "via", h.gateway)

    def start_docker(self, timeout: float = 60):
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.data_root.mkdir(parents=True, exist_ok=True)
        log = open(self.hosts.base / f"dockerd-h{self.n}.log", "ab")
        self.dockerd = subprocess.Popen(
            [*self.enter, "dockerd", "--data-root", str(self.data_root / "docker"),
             "--exec-root", str(self.run_dir / "exec"), "--host", self.docker_host,
             "--pidfile", str(self.run_dir / "docker.pid")],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        log.close()

        def answers():
            if self.dockerd.poll() is not None:
                raise RuntimeError(f"dockerd of {self.netns} exited with {self.dockerd.returncode}: "
                                   f"{self.log_tail()}")
            return self.docker("version", "--format", "{{.Server.Version}}", check=False).strip()

        wait_for(answers, timeout, interval=0.2, what=f"dockerd of {self.netns}")
        save = subprocess.Popen(["/usr/bin/docker", "save", TEST_IMAGE], stdout=subprocess.PIPE,
                                env={k: v for k, v in os.environ.items() if k != "DOCKER_HOST"})
        load = subprocess.run(["/usr/bin/docker", "load"], stdin=save.stdout, capture_output=True,
                              text=True, timeout=120, env=dict(os.environ, DOCKER_HOST=self.docker_host))
        save.stdout.close()
        if save.wait(timeout=120) != 0 or load.returncode != 0:
            raise RuntimeError(f"loading {TEST_IMAGE} into {self.netns}: {load.stderr}")

    def log_tail(self, n: int = 20) -> str:
        path = self.hosts.base / f"dockerd-h{self.n}.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:]) if path.exists() else ""

    def start_agent(self, server: GantryServer, cluster: str, *extra: str) -> GantryAgent:
        base = self.hosts.base
        self.agent = GantryAgent(server, cluster, base / f"agent-h{self.n}", base / f"agent-h{self.n}.log",
                                 prefix=self.enter, env={"DOCKER_HOST": self.docker_host},
                                 extra_args=("--task-subnet", self.task_subnet, *extra))
        return self.agent.start(timeout=60)

    def start_sim(self, servers: GantryServer | list[GantryServer], cluster: str, seed: int,
                  zones: int = 1, first: int = 0) -> subprocess.Popen:
        """A Docker-free host: `gantry sim` with one simulated instance in this namespace, the
        fleet's instance number `first` (of `zones` zones). Given several servers (of one store),
        its agent polls one and moves to the next when that one goes away."""
        servers = servers if isinstance(servers, list) else [servers]
        log = open(self.hosts.base / f"sim-h{self.n}.log", "ab")
        env = {k: v for k, v in os.environ.items() if not k.startswith("GANTRY_")}
        p = subprocess.Popen([*self.enter, str(gantry_bin()), "sim",
                              "--server", ",".join(s.endpoint for s in servers), "--cluster", cluster,
                              "--instances", "1", "--zones", str(zones), "--first", str(first),
                              "--seed", str(seed)],
                             stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)
        log.close()
        self.hosts.processes.append(p)
        return p

    def link(self, up: bool):
        """Takes this host's link down (a partition) or brings it back."""
        run("ip", "link", "set", self.veth, "up" if up else "down")

    def close(self, errors: list[str]):
        def attempt(what, fn):
            try:
                fn()
            except Exception as e:  # noqa: BLE001  (tear down everything else regardless)
                errors.append(f"{self.netns}: {what}: {e}")

        if self.agent:
            attempt("agent", self.agent.kill)
        if self.dockerd and self.dockerd.poll() is None:
            def containers():
                ids = self.docker("ps", "-aq", check=False).split()
                if ids:
                    self.docker("rm", "-f", *ids, check=False, timeout=120)
            attempt("containers", containers)

            def stop():
                self.dockerd.send_signal(signal.SIGTERM)
                try:
                    self.dockerd.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    self.dockerd.kill()
                    self.dockerd.wait(timeout=30)
            attempt("dockerd", stop)
        # What the engine left mounted (overlay layers, its exec root), deepest first.
        mounts = []
        for line in Path("/proc/self/mounts").read_text().splitlines():
            point = line.split()[1]
            if point.startswith((str(self.data_root) + "/", str(self.run_dir) + "/")):
                mounts.append(point)
        for point in sorted(mounts, key=len, reverse=True):
            run("umount", "-l", point, check=False)
        for d in (self.data_root, self.run_dir):
            attempt(f"removing {d}", lambda d=d: shutil.rmtree(d, ignore_errors=True))
        try:
            self.data_root.parent.rmdir()   # /var/lib/gantry-hosts, once no harness uses it
        except OSError:
            pass
        run("ip", "link", "del", self.veth, check=False)
        if Path(f"/run/netns/{self.netns}").exists():
            attempt("namespace", lambda: run("ip", "netns", "del", self.netns))


class Hosts:
    """A bridge and the hosts on it; `add()` makes one, `close()` removes them all."""

    def __init__(self, base: Path):
        self.base = Path(base)
        self.base.mkdir(parents=True, exist_ok=True)
        self.tag = os.urandom(2).hex()
        self.bridge = f"gbr{self.tag}"
        routes = run("ip", "-4", "route", "show", "table", "all").stdout
        free = [x for x in range(256)
                if f"10.231.{x}." not in routes and f"10.232.{x}." not in routes]
        if not free:
            raise RuntimeError("no free 10.231.X.0/24 and 10.232.X.0/24 pair on this machine")
        self.x = random.choice(free)
        self.gateway = f"10.231.{self.x}.1"
        self.hosts: list[Host] = []
        self.processes: list[subprocess.Popen] = []
        self._forward = ["FORWARD", "-i", self.bridge, "-o", self.bridge, "-j", "ACCEPT"]
        run("ip", "link", "add", self.bridge, "type", "bridge")
        try:
            run("ip", "addr", "add", f"{self.gateway}/24", "dev", self.bridge)
            run("ip", "link", "set", self.bridge, "up")
            # Bridged frames go through iptables' FORWARD where br_netfilter is loaded (Docker
            # loads it, and its FORWARD policy is DROP): let host-to-host traffic through.
            run("iptables", "-I", *self._forward)
        except Exception:
            self.close()
            raise

    def add(self, docker: bool = True) -> Host:
        host = Host(self, len(self.hosts) + 1)
        self.hosts.append(host)
        host._up()
        if docker:
            host.start_docker()
        return host

    def spawn(self, *args: str, log: str) -> subprocess.Popen:
        """A process of the root namespace, killed by close()."""
        out = open(self.base / log, "ab")
        env = {k: v for k, v in os.environ.items() if not k.startswith("GANTRY_")}
        p = subprocess.Popen(list(args), stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                             env=env)
        out.close()
        self.processes.append(p)
        return p

    def routes(self, server: GantryServer, cluster: str) -> subprocess.Popen:
        """`gantry routes` in the root namespace: the server's host reaches every task subnet."""
        return self.spawn(str(gantry_bin()), "routes", "--server", server.endpoint, "--cluster", cluster,
                          log="routes.log")

    def close(self):
        errors: list[str] = []
        for p in self.processes:
            if p.poll() is None:
                p.kill()
                p.wait(timeout=30)
        for h in reversed(self.hosts):
            h.close(errors)
        run("iptables", "-D", *self._forward, check=False)
        # Deleting the bridge also drops the routes through it (`gantry routes`').
        run("ip", "link", "del", self.bridge, check=False)
        leftover = run("ip", "-4", "route", "show", "table", "all").stdout
        if f"10.232.{self.x}." in leftover:
            errors.append(f"routes left to 10.232.{self.x}.0/24: {leftover}")
        if errors:
            raise RuntimeError("tearing down the hosts: " + "; ".join(errors))


def wait_until(predicate, timeout: float, what: str, interval: float = 0.2):
    """wait_for, with the time it took."""
    start = time.monotonic()
    value = wait_for(predicate, timeout, interval=interval, what=what)
    return value, time.monotonic() - start
