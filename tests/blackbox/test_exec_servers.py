"""ECS Exec through any server sharing one etcd (Debian's etcd-server, a throwaway member), with
real Docker: `gantry exec` pointed at server A reaches a task whose agent long-polls server B,
and the reverse. The session waits in the store for the agent's poll on the other server, which
connects back to the server holding the session; nothing is left waiting in the store after."""

from __future__ import annotations

import base64
import json
import subprocess
import urllib.request

from harness import DockerCluster, GantryAgent, GantryServer, gantry_bin, wait_for
from test_etcd import Etcd, etcd  # noqa: F401  (the fixture)

ROOT = "execx"


def server(tmp_path, etcd_: Etcd, name: str) -> GantryServer:
    return GantryServer(tmp_path / f"{name}-data", tmp_path / f"{name}.log", enable_reset=False,
                        extra_args=("--store", etcd_.url(ROOT))).start()


def gantry_exec(through: GantryServer, cluster: str, task: str, *command: str,
                stdin: str = "") -> subprocess.CompletedProcess:
    return subprocess.run([str(gantry_bin()), "exec", "--cluster", cluster, "--task", task,
                           "--container", "app", "--", *command], input=stdin,
                          capture_output=True, text=True, env=through.cli_env(), timeout=90)


def waiting_sessions(etcd_: Etcd) -> list[str]:
    """The keys of the exec sessions waiting in the store, read from etcd itself."""
    prefix = f"/{ROOT}/kv/".encode()
    end = prefix[:-1] + bytes([prefix[-1] + 1])
    body = json.dumps({"key": base64.b64encode(prefix).decode(),
                       "range_end": base64.b64encode(end).decode(), "keys_only": True}).encode()
    req = urllib.request.Request(f"http://127.0.0.1:{etcd_.client_port}/v3/kv/range", data=body,
                                 headers={"content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as r:
        kvs = json.load(r).get("kvs", [])
    keys = [base64.b64decode(kv["key"]).decode() for kv in kvs]
    return [k for k in keys if "/_ecs/exec/" in k]


def exec_task(cluster: DockerCluster) -> str:
    fam = cluster.cluster
    cluster.register(fam, [cluster.container("app")])
    task = cluster.run(fam, enableExecuteCommand=True)
    cluster.wait_task(task["taskArn"], lambda t: t["lastStatus"] == "RUNNING" and all(
        a["lastStatus"] == "RUNNING" for c in t["containers"] for a in c.get("managedAgents", [])),
        timeout=60, what="the exec-enabled task to run")
    return task["taskArn"]


def test_gantry_exec_through_either_server_reaches_an_agent_polling_the_other(
        tmp_path, etcd, docker_run_id):
    a = server(tmp_path, etcd, "a")
    b = server(tmp_path, etcd, "b")
    # Each agent polls one server only; each cluster is created through the other one.
    on_b = DockerCluster(a, f"execx-b-{docker_run_id}", docker_run_id)
    on_a = DockerCluster(b, f"execx-a-{docker_run_id}", docker_run_id)
    agents = []
    try:
        tasks = {}
        for cluster, polled in ((on_b, b), (on_a, a)):
            a.ecs.create_cluster(clusterName=cluster.cluster)
            agent = GantryAgent(polled, cluster.cluster, tmp_path / f"{cluster.cluster}-agent",
                                tmp_path / f"{cluster.cluster}-agent.log")
            agents.append(agent)
            cluster.agents.append(agent)
            agent.start(timeout=60)
            # The server the task is run through hears of the agent from the other's heartbeat.
            wait_for(lambda: [ci["agentConnected"] for ci in cluster.ecs.describe_container_instances(
                cluster=cluster.cluster, containerInstances=[agent.instance_arn])["containerInstances"]]
                == [True], 10, interval=0.1, what="the agent connected as the other server sees it")
            tasks[cluster.cluster] = exec_task(cluster)

        # Through A to the agent polling B, then through B to the agent polling A.
        for through, cluster in ((a, on_b), (b, on_a)):
            p = gantry_exec(through, cluster.cluster, tasks[cluster.cluster], "sh", "-c", "echo hi")
            assert (p.returncode, p.stdout) == (0, "hi\n"), \
                f"{p.stderr}\n{cluster.agent.log_tail()}\n{through.log_tail()}"
            # Exit codes, stderr and stdin cross too.
            p = gantry_exec(through, cluster.cluster, tasks[cluster.cluster], "sh", "-c",
                            "tr a-z A-Z; echo oops >&2; exit 3", stdin="from stdin\n")
            assert (p.returncode, p.stdout, p.stderr) == (3, "FROM STDIN\n", "oops\n"), p.stderr

        # Taken by the agents' polls: nothing waits in the store.
        assert waiting_sessions(etcd) == []
    finally:
        for cluster in (on_b, on_a):
            try:
                cluster.forget_tasks()
            except Exception:  # noqa: BLE001  (a server may be gone; the run's cleanup removes them)
                pass
        for agent in agents:
            agent.kill()
        a.kill()
        b.kill()
