"""A data directory belongs to one process: a second `gantry server`, `gantry up` or
`gantry agent` on a directory in use fails at once with a message naming the one that holds it,
and the first keeps working. The lock is the kernel's (flock), so a process killed with SIGKILL
leaves nothing to clean up: the next one starts.
"""

from __future__ import annotations

import os
import subprocess
import time

from harness import GantryAgent, GantryServer, free_port, gantry_bin


def run_second(*args: str, timeout: float = 20) -> tuple[subprocess.CompletedProcess, float]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GANTRY_")}
    started = time.monotonic()
    p = subprocess.run([str(gantry_bin()), *args], capture_output=True, text=True, timeout=timeout,
                       stdin=subprocess.DEVNULL, env=env)
    return p, time.monotonic() - started


def assert_refused(p: subprocess.CompletedProcess, elapsed: float, data_dir, holder: str):
    assert p.returncode != 0, f"the second process ran: {p.stdout}{p.stderr}"
    assert elapsed < 5, f"the second process took {elapsed:.1f}s to give up"
    assert (f"the data directory {data_dir} is in use by another gantry process ({holder}); "
            "stop it, or give this one another --data-dir") in p.stderr, p.stderr


def test_a_second_server_on_a_data_directory_in_use_fails_at_once(spawn_server, tmp_path):
    first = spawn_server("first")
    first.ecs.create_cluster(clusterName="kept")
    p, elapsed = run_second("server", "--auth", "open", "--listen", f"127.0.0.1:{free_port()}",
                            "--data-dir", str(first.data_dir))
    assert_refused(p, elapsed, first.data_dir, f"pid {first.proc.pid}: gantry server")
    # The first is unharmed.
    assert first.proc.poll() is None
    assert first.ecs.list_clusters()["clusterArns"] == \
        ["arn:aws:ecs:us-east-1:000000000000:cluster/kept"]

    # Killed with SIGKILL, it leaves no stale lock: the next server starts on its state.
    first.kill()
    again = GantryServer(first.data_dir, tmp_path / "again.log")
    try:
        again.start()
        assert again.ecs.list_clusters()["clusterArns"] == \
            ["arn:aws:ecs:us-east-1:000000000000:cluster/kept"]
    finally:
        again.kill()


def test_a_second_gantry_up_on_a_data_directory_in_use_fails_at_once(spawn_server):
    first = spawn_server("up", command="up")
    p, elapsed = run_second("up", "--listen", f"127.0.0.1:{free_port()}", "--data-dir",
                            str(first.data_dir))
    assert_refused(p, elapsed, first.data_dir, f"pid {first.proc.pid}: gantry up")
    # Nor can a server take the directory of a `gantry up`.
    p, elapsed = run_second("server", "--listen", f"127.0.0.1:{free_port()}", "--data-dir",
                            str(first.data_dir))
    assert_refused(p, elapsed, first.data_dir, f"pid {first.proc.pid}: gantry up")
    assert first.proc.poll() is None
    assert first.ecs.list_clusters()["clusterArns"] == []


def test_a_second_agent_on_a_data_directory_in_use_fails_at_once(spawn_agent, tmp_path):
    cluster = spawn_agent("lock")
    first = cluster.agent
    p, elapsed = run_second("agent", "--server", cluster.server.endpoint, "--cluster",
                            cluster.cluster, "--data-dir", str(first.data_dir))
    assert_refused(p, elapsed, first.data_dir, f"pid {first.proc.pid}: gantry agent")
    # Still one container instance, connected, run by the first agent.
    ecs = cluster.ecs
    assert ecs.list_container_instances(cluster=cluster.cluster)["containerInstanceArns"] == \
        [first.instance_arn]
    ci = first.describe()
    assert ci["agentConnected"] and ci["status"] == "ACTIVE", ci

    # After SIGKILL, an agent on the same directory starts, as the same container instance.
    first.kill()
    again = GantryAgent(cluster.server, cluster.cluster, first.data_dir, tmp_path / "again.log")
    cluster.agents.append(again)
    again.start()
    assert again.instance_arn == first.instance_arn
