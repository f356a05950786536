"""AWS/ECS metrics from real containers: a service whose task burns CPU far beyond its `cpu: 64`
reservation shows CPUUtilization above 150 % (ECS's definition: against the reservation), an
alarm on it goes to ALARM, and back to OK once the load stops. Wait-for-condition only."""

from __future__ import annotations

import datetime as dt
import time

from harness import GantryAgent, busybox_container, docker, docker_ids, wait_for


def iso_now(offset: float) -> str:
    t = dt.datetime.fromtimestamp(time.time() + offset, dt.timezone.utc)
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def test_busy_task_shows_cpu_utilization_and_alarms(spawn_server, docker_run_id, tmp_path, unique):
    # AWS/ECS is published every 5 s here (high resolution), so the alarm can use 10 s periods.
    server = spawn_server("cw-ecs", extra_args=("--ecs-metrics-period", "5"))
    cluster = unique("cw")
    server.ecs.create_cluster(clusterName=cluster)
    agent = GantryAgent(server, cluster, tmp_path / "agent", tmp_path / "agent.log")
    try:
        agent.start()
        # Four busy loops until /tmp/stop exists, against the container's `cpu: 64` (CPU shares, a
        # soft reservation; a task-level cpu would be a hard limit, as on ECS). On a quiet host
        # that is 3,200 % (both cores); the shared test machine, at a load of 12 on 2 cores,
        # leaves Docker's containers about a quarter of a core, which still shows 400 %. (With
        # `cpu: 512`, one busy core shows 200 % on a quiet host.)
        burn = "while [ ! -f /tmp/stop ]; do :; done"
        loops = " & ".join(f"({burn})" for _ in range(4))
        container = busybox_container("burn", docker_run_id, cpu=64,
                                      command=["sh", "-c", f"{loops} & wait; sleep 600"])
        td = server.ecs.register_task_definition(family=unique("burn"),
                                                 containerDefinitions=[container])["taskDefinition"]
        service = unique("svc")
        server.ecs.create_service(cluster=cluster, serviceName=service, desiredCount=1,
                                  taskDefinition=td["taskDefinitionArn"])
        dims = ["Name=ClusterName,Value=" + cluster, "Name=ServiceName,Value=" + service]

        def cpu_max():
            out = server.aws_ok("cloudwatch", "get-metric-statistics", "--namespace", "AWS/ECS",
                                "--metric-name", "CPUUtilization", "--dimensions", *dims,
                                "--start-time", iso_now(-600), "--end-time", iso_now(60),
                                "--period", "60", "--statistics", "Average", "Maximum", "SampleCount")
            return [d for d in out["Datapoints"] if d["Maximum"] > 150] or None
        busy = wait_for(cpu_max, 120, 1, "AWS/ECS CPUUtilization above 150 %")
        assert busy[0]["Unit"] == "Percent"

        cluster_level = server.aws_ok("cloudwatch", "list-metrics", "--namespace", "AWS/ECS",
                                      "--dimensions", "Name=ClusterName,Value=" + cluster)["Metrics"]
        names = {(m["MetricName"], len(m["Dimensions"])) for m in cluster_level}
        assert {("CPUUtilization", 2), ("MemoryUtilization", 2), ("CPUUtilization", 1),
                ("MemoryUtilization", 1), ("CPUReservation", 1), ("MemoryReservation", 1)} <= names, names

        server.aws_ok("cloudwatch", "put-metric-alarm", "--alarm-name", "busy", "--namespace", "AWS/ECS",
                      "--metric-name", "CPUUtilization", "--dimensions", *dims, "--statistic", "Average",
                      "--period", "10", "--evaluation-periods", "2", "--threshold", "150",
                      "--comparison-operator", "GreaterThanThreshold")

        def alarm_state(want):
            a = server.aws_ok("cloudwatch", "describe-alarms", "--alarm-names", "busy")["MetricAlarms"][0]
            return a if a["StateValue"] == want else None
        alarm = wait_for(lambda: alarm_state("ALARM"), 90, 1, "the alarm to go to ALARM")
        assert alarm["StateReason"].startswith("Threshold Crossed: 2 out of the last 2 datapoints"), alarm

        # The load stops: the alarm goes back to OK.
        [task_arn] = server.ecs.list_tasks(cluster=cluster, serviceName=service)["taskArns"]
        [cid] = docker_ids({"gantry.task-arn": task_arn}, stopped=False)
        docker("exec", cid, "touch", "/tmp/stop")
        ok = wait_for(lambda: alarm_state("OK"), 90, 1, "the alarm to go back to OK")
        assert "not greater than the threshold (150.0)." in ok["StateReason"], ok
        history = server.aws_ok("cloudwatch", "describe-alarm-history", "--alarm-name", "busy",
                                "--history-item-type", "StateUpdate")["AlarmHistoryItems"]
        summaries = [h["HistorySummary"] for h in history]
        # Newest first; the first evaluation may have seen the load's ramp and said OK first.
        assert summaries[:2] in (["Alarm updated from ALARM to OK", "Alarm updated from INSUFFICIENT_DATA to ALARM"],
                                 ["Alarm updated from ALARM to OK", "Alarm updated from OK to ALARM"]), summaries
        server.ecs.update_service(cluster=cluster, service=service, desiredCount=0)
        server.ecs.delete_service(cluster=cluster, service=service)
        wait_for(lambda: not docker_ids({"gantry.task-arn": task_arn}, stopped=False), 60, 0.5,
                 "the task's container to stop")
    finally:
        agent.kill()
