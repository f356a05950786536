"""Container Insights with real Docker: a cluster with `containerInsights` enabled gets its
performance log events (Type Task, Service and Cluster, in embedded metric format) in
`/aws/ecs/containerinsights/CLUSTER/performance`, and the ECS/ContainerInsights metrics CloudWatch
Logs extracts from them; a cluster without it gets neither. Wait-for-condition only."""

from __future__ import annotations

import datetime as dt
import json
import time

from harness import GantryAgent, busybox_container, wait_for


def iso_now(offset: float) -> str:
    t = dt.datetime.fromtimestamp(time.time() + offset, dt.timezone.utc)
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def test_insights_cluster_gets_events_and_metrics_and_a_plain_one_does_not(
        spawn_server, docker_run_id, tmp_path, unique):
    server = spawn_server("insights", extra_args=("--ecs-metrics-period", "5"))
    on, off = unique("ci-on"), unique("ci-off")
    server.ecs.create_cluster(clusterName=on, settings=[{"name": "containerInsights", "value": "enhanced"}])
    server.ecs.create_cluster(clusterName=off)
    agents = [GantryAgent(server, c, tmp_path / f"agent-{c}", tmp_path / f"agent-{c}.log") for c in (on, off)]
    services = {}
    try:
        for a in agents:
            a.start()
        container = busybox_container("app", docker_run_id, cpu=128, memory=64,
                                      command=["sh", "-c", "sleep 600"])
        family = unique("ci")
        td = server.ecs.register_task_definition(family=family, containerDefinitions=[container])["taskDefinition"]
        for c in (on, off):
            services[c] = unique("svc")
            server.ecs.create_service(cluster=c, serviceName=services[c], desiredCount=1,
                                      taskDefinition=td["taskDefinitionArn"])
        group = f"/aws/ecs/containerinsights/{on}/performance"

        def events_of(kind):
            # The group appears with the first delivery, as on AWS: until then it does not exist.
            rc, out = server.aws("logs", "filter-log-events", "--log-group-name", group,
                                 "--filter-pattern", f'{{ $.Type = "{kind}" }}')
            if rc != 0:
                assert "ResourceNotFoundException" in out, out
                return None
            return [json.loads(e["message"]) for e in out["events"]] or None

        tasks = wait_for(lambda: events_of("Task"), 120, 1, "a Task performance event")
        t = tasks[-1]
        assert (t["ClusterName"], t["TaskDefinitionFamily"], t["ServiceName"]) == (on, family, services[on])
        assert t["CpuReserved"] == 128.0 and t["MemoryReserved"] == 64.0, t
        assert t["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "ECS/ContainerInsights"

        # Enhanced: each container has events of its own, against its own reservation.
        cont = wait_for(lambda: events_of("Container"), 30, 1, "a Container performance event")[-1]
        assert (cont["ContainerName"], cont["TaskDefinitionFamily"], cont["ServiceName"]) == \
            ("app", family, services[on]), cont
        assert cont["ContainerCpuReserved"] == 128.0 and cont["ContainerMemoryReserved"] == 64.0, cont
        assert cont["ContainerMemoryUtilized"] > 0, cont

        def running_service_event():
            evs = events_of("Service") or []
            return [e for e in evs if e["RunningTaskCount"] == 1] or None
        s = wait_for(running_service_event, 60, 1, "a Service event with its task running")[-1]
        assert (s["ServiceName"], s["DesiredTaskCount"], s["DeploymentCount"]) == (services[on], 1, 1)
        c = wait_for(lambda: events_of("Cluster"), 30, 1, "a Cluster event")[-1]
        assert c["ContainerInstanceCount"] == 1 and c["ServiceCount"] == 1, c
        streams = server.aws_ok("logs", "describe-log-streams", "--log-group-name", group)["logStreams"]
        assert any(x["logStreamName"].startswith("AgentTelemetry-") for x in streams), streams

        # The metrics come out of those events.
        def metric(name, *dims):
            out = server.aws_ok("cloudwatch", "get-metric-statistics", "--namespace", "ECS/ContainerInsights",
                                "--metric-name", name, "--dimensions", *dims,
                                "--start-time", iso_now(-600), "--end-time", iso_now(60),
                                "--period", "60", "--statistics", "Maximum")
            return out["Datapoints"] or None
        reserved = wait_for(lambda: metric("CpuReserved", f"Name=ClusterName,Value={on}",
                                           f"Name=TaskDefinitionFamily,Value={family}"), 30, 1, "CpuReserved")
        assert reserved[0]["Maximum"] == 128.0
        running = wait_for(lambda: metric("RunningTaskCount", f"Name=ServiceName,Value={services[on]}",
                                          f"Name=ClusterName,Value={on}"), 30, 1, "RunningTaskCount")
        assert max(d["Maximum"] for d in running) == 1.0
        listed = server.aws_ok("cloudwatch", "list-metrics", "--namespace", "ECS/ContainerInsights",
                               "--dimensions", f"Name=ClusterName,Value={on}")["Metrics"]
        names = {m["MetricName"] for m in listed}
        assert {"CpuUtilized", "CpuReserved", "MemoryUtilized", "MemoryReserved", "NetworkRxBytes",
                "NetworkTxBytes", "StorageReadBytes", "StorageWriteBytes", "DesiredTaskCount",
                "RunningTaskCount", "PendingTaskCount", "DeploymentCount", "TaskSetCount", "TaskCount",
                "ServiceCount", "ContainerInstanceCount", "TaskCpuUtilization", "ContainerCpuUtilization",
                "ContainerMemoryUtilization"} <= names, names

        # The cluster without Container Insights: its task runs and reports (AWS/ECS has it),
        # but it has no performance log group and no ECS/ContainerInsights metric.
        def off_in_aws_ecs():
            out = server.aws_ok("cloudwatch", "list-metrics", "--namespace", "AWS/ECS",
                                "--dimensions", f"Name=ClusterName,Value={off}")["Metrics"]
            return out or None
        wait_for(off_in_aws_ecs, 60, 1, "AWS/ECS metrics of the cluster without insights")
        groups = server.aws_ok("logs", "describe-log-groups", "--log-group-name-prefix",
                               f"/aws/ecs/containerinsights/{off}/")["logGroups"]
        assert groups == []
        assert server.aws_ok("cloudwatch", "list-metrics", "--namespace", "ECS/ContainerInsights",
                             "--dimensions", f"Name=ClusterName,Value={off}")["Metrics"] == []
    finally:
        for c, s in services.items():
            try:
                server.ecs.update_service(cluster=c, service=s, desiredCount=0)
                server.ecs.delete_service(cluster=c, service=s)
            except Exception:
                pass
        for a in agents:
            a.kill()
