"""UpdateContainerAgent for real: an agent whose binary is not the server's downloads the
server's, checks its SHA-256, and re-executes itself as the same process, keeping its container
instance and the containers of its tasks. Needs Docker (tasks run as real containers).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import uuid
from pathlib import Path

from harness import DockerCluster, GantryAgent, docker_ids, docker_inspect, gantry_bin, wait_for

# The order ECS's agentUpdateStatus moves through.
ORDER = ["PENDING", "STAGING", "STAGED", "UPDATING", "UPDATED"]


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def altered_copy(dst: Path, tail: bytes) -> Path:
    """gantry's binary with bytes appended: it runs the same, with another digest."""
    shutil.copyfile(gantry_bin(), dst)
    with open(dst, "ab") as f:
        f.write(tail)
    dst.chmod(0o755)
    return dst


def watch_status(agent: GantryAgent, seen: list, until: str, fail_on: str | None = None):
    """Waits for agentUpdateStatus `until` (with the agent connected), recording each status
    seen on the way."""
    def check():
        ci = agent.describe()
        status = ci.get("agentUpdateStatus")
        if not seen or seen[-1] != status:
            seen.append(status)
        if fail_on and status == fail_on:
            raise AssertionError(f"agentUpdateStatus {status}; seen {seen}\n{agent.log_tail()}")
        if not agent.alive:
            raise AssertionError(f"the agent exited\n{agent.log_tail()}")
        return ci if status == until and ci["agentConnected"] else None
    return wait_for(check, 90, interval=0.05, what=f"agentUpdateStatus {until}")


def test_an_older_agent_is_updated_to_the_servers_binary_and_keeps_its_task(spawn_agent, unique,
                                                                              tmp_path):
    old = altered_copy(tmp_path / "gantry-old", b"\0an older agent " + uuid.uuid4().bytes)
    node = spawn_agent("update", binary=old)
    agent = node.agent
    instance = agent.instance_arn
    pid = agent.proc.pid
    assert agent.describe()["versionInfo"]["agentHash"] == sha256(old)
    server_hash = sha256(gantry_bin())

    td = node.register(unique("upd"), [node.container("main")])
    task = node.wait_status(node.run(td)["taskArn"], "RUNNING")
    runtime_id = task["containers"][0]["runtimeId"]

    out = node.aws_ok("ecs", "update-container-agent", "--cluster", node.cluster,
                      "--container-instance", instance)
    assert out["containerInstance"]["containerInstanceArn"] == instance
    assert out["containerInstance"]["agentUpdateStatus"] == "PENDING", out
    seen = ["PENDING"]
    ci = watch_status(agent, seen, "UPDATED", fail_on="FAILED")
    # The statuses come in ECS's order (a quick step may pass between two looks).
    assert [ORDER.index(s) for s in seen] == sorted(ORDER.index(s) for s in seen), seen

    assert ci["versionInfo"]["agentHash"] == server_hash
    assert ci["containerInstanceArn"] == instance and ci["status"] == "ACTIVE"
    # The same process runs the new binary, staged in the agent's data directory.
    assert agent.alive and agent.proc.pid == pid
    assert os.readlink(f"/proc/{pid}/exe") == str(agent.data_dir / "agent-update")
    assert sha256(agent.data_dir / "agent-update") == server_hash
    assert [c["containerInstanceArn"] for c in agent.instances()] == [instance]

    # Its task went on running in the same container, adopted by the new agent.
    again = node.describe(task["taskArn"])
    assert again["lastStatus"] == "RUNNING" and again["desiredStatus"] == "RUNNING", again
    assert again["containers"][0]["runtimeId"] == runtime_id
    assert docker_ids({"gantry.task-arn": task["taskArn"]}) == [runtime_id]
    [c] = docker_inspect([runtime_id])
    assert c["State"]["Running"]
    # And the updated agent runs new tasks.
    barrier = node.wait_status(node.run(td)["taskArn"], "RUNNING", timeout=30)
    assert barrier["containerInstanceArn"] == instance

    rc, err = node.aws("ecs", "update-container-agent", "--cluster", node.cluster,
                       "--container-instance", instance)
    assert rc != 0 and "NoUpdateAvailableException" in err, err

    # A stop still reaches the adopted task's container.
    node.ecs.stop_task(cluster=node.cluster, task=task["taskArn"], reason="done")
    stopped = node.wait_status(task["taskArn"], "STOPPED", timeout=30)
    assert stopped["stopCode"] == "UserInitiated"


def test_a_download_that_does_not_match_the_announced_digest_fails_and_the_agent_runs_on(
        spawn_server, docker_run_id, tmp_path, unique):
    # A server run from a binary that is then replaced on disk (an upgrade in place while it
    # runs): it announces the digest of what it runs, and serves the file now at its path.
    served = altered_copy(tmp_path / "gantry-server", b"")
    server = spawn_server("updsrv", binary=served, enable_reset=False)
    cluster = DockerCluster(server, unique("mismatch"), docker_run_id)
    server.ecs.create_cluster(clusterName=cluster.cluster)
    old = altered_copy(tmp_path / "gantry-old", b"\0an older agent " + uuid.uuid4().bytes)
    agent = GantryAgent(server, cluster.cluster, tmp_path / "agent", tmp_path / "agent.log",
                        binary=old)
    cluster.agents.append(agent)
    try:
        agent.start()
        pid = agent.proc.pid
        td = cluster.register(unique("mm"), [cluster.container("main")])
        task = cluster.wait_status(cluster.run(td)["taskArn"], "RUNNING")
        runtime_id = task["containers"][0]["runtimeId"]

        # The agent is held still while the update is asked for and the binary replaced, so
        # that it downloads the replaced one.
        os.kill(pid, signal.SIGSTOP)
        try:
            out = server.aws_ok("ecs", "update-container-agent", "--cluster", cluster.cluster,
                                "--container-instance", agent.instance_arn)
            assert out["containerInstance"]["agentUpdateStatus"] == "PENDING", out
            replaced = altered_copy(tmp_path / "gantry-server.new", b"\0replaced on disk")
            os.replace(replaced, served)
        finally:
            os.kill(pid, signal.SIGCONT)
        seen = ["PENDING"]
        ci = watch_status(agent, seen, "FAILED", fail_on="UPDATED")
        assert "UPDATING" not in seen, seen
        assert ci["versionInfo"]["agentHash"] == sha256(old)
        assert agent.alive and agent.proc.pid == pid
        assert os.readlink(f"/proc/{pid}/exe") == str(old)
        assert not (agent.data_dir / "agent-update").exists()
        assert "SHA-256" in agent.log_text()
        again = cluster.describe(task["taskArn"])
        assert again["lastStatus"] == "RUNNING"
        assert again["containers"][0]["runtimeId"] == runtime_id
        # The agent still works, and a failed update may be asked for again.
        cluster.wait_status(cluster.run(td)["taskArn"], "RUNNING", timeout=30)
        out = server.aws_ok("ecs", "update-container-agent", "--cluster", cluster.cluster,
                            "--container-instance", agent.instance_arn)
        assert out["containerInstance"]["agentUpdateStatus"] == "PENDING", out
        watch_status(agent, ["PENDING"], "FAILED", fail_on="UPDATED")
    finally:
        cluster.forget_tasks()
        agent.kill()
