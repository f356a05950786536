"""Placement constraints with the AWS CLI, on real agents: three `gantry agent` processes join one
cluster from this host, each claiming a different availability zone."""

from __future__ import annotations

import json
import uuid

from harness import DockerCluster, GantryAgent


def test_member_of_zone_b_and_an_impossible_constraint(docker_server, docker_run_id, tmp_path):
    cluster = DockerCluster(docker_server, f"zones-{uuid.uuid4().hex[:8]}", docker_run_id)
    docker_server.ecs.create_cluster(clusterName=cluster.cluster)
    agents = []
    try:
        for zone in ["zone-a", "zone-b", "zone-c"]:
            agent = GantryAgent(docker_server, cluster.cluster, tmp_path / zone, tmp_path / f"{zone}.log",
                                extra_args=("--availability-zone", zone))
            agents.append(agent)
            cluster.agents.append(agent)
            agent.start()
        family = f"zoned-{docker_run_id}"
        cluster.aws_ok("ecs", "register-task-definition", "--family", family, "--container-definitions",
                       json.dumps([cluster.container("app")]))
        out = cluster.aws_ok("ecs", "run-task", "--cluster", cluster.cluster, "--task-definition", family,
                             "--count", "6", "--placement-constraints",
                             "type=memberOf,expression=attribute:ecs.availability-zone == zone-b")
        assert out["failures"] == [], out
        assert len(out["tasks"]) == 6
        zone_b = next(a.instance_arn for a in agents if "zone-b" in str(a.data_dir))
        assert {t["availabilityZone"] for t in out["tasks"]} == {"zone-b"}
        assert {t["containerInstanceArn"] for t in out["tasks"]} == {zone_b}
        cluster.started.extend(t["taskArn"] for t in out["tasks"])

        out = cluster.aws_ok("ecs", "run-task", "--cluster", cluster.cluster, "--task-definition", family,
                             "--placement-constraints",
                             "type=memberOf,expression=attribute:ecs.availability-zone == zone-z")
        assert out["tasks"] == []
        assert sorted(f["arn"] for f in out["failures"]) == sorted(a.instance_arn for a in agents)
        assert {f["reason"] for f in out["failures"]} == {"MemberOf"}
    finally:
        cluster.forget_tasks()
        for a in agents:
            a.kill()
