"""Application Auto Scaling of ECS services with the AWS CLI and real Docker: target tracking on
a CPU-burning busybox load (1 → 4 and back to 1, with the high-resolution setting), a step
policy fired by `aws cloudwatch set-alarm-state`, and an `at()` action one minute ahead that
raises MinCapacity. Wait-for-condition only."""

from __future__ import annotations

import datetime as dt
import time

from harness import GantryAgent, busybox_container, docker, docker_ids, wait_for

DIM = "ecs:service:DesiredCount"


def start(spawn_server, tmp_path, unique, *extra):
    server = spawn_server("aas", extra_args=extra)
    cluster = unique("aas")
    server.ecs.create_cluster(clusterName=cluster)
    agent = GantryAgent(server, cluster, tmp_path / "agent", tmp_path / "agent.log")
    agent.start()
    return server, cluster, agent


def service_of(server, cluster, name):
    return server.ecs.describe_services(cluster=cluster, services=[name])["services"][0]


def sleeping_service(server, cluster, unique, run_id):
    td = server.ecs.register_task_definition(
        family=unique("sleep"), containerDefinitions=[busybox_container("app", run_id)])["taskDefinition"]
    name = unique("svc")
    server.ecs.create_service(cluster=cluster, serviceName=name, desiredCount=1,
                              taskDefinition=td["taskDefinitionArn"])
    return name


def register(server, resource, lo, hi):
    return server.aws_ok("application-autoscaling", "register-scalable-target", "--service-namespace", "ecs",
                         "--resource-id", resource, "--scalable-dimension", DIM,
                         "--min-capacity", str(lo), "--max-capacity", str(hi))


def activities(server, resource):
    return server.aws_ok("application-autoscaling", "describe-scaling-activities", "--service-namespace", "ecs",
                         "--resource-id", resource)["ScalingActivities"]


def cleanup(server, cluster, name):
    server.ecs.update_service(cluster=cluster, service=name, desiredCount=0)
    server.ecs.delete_service(cluster=cluster, service=name)


def test_a_step_policy_fires_from_set_alarm_state(spawn_server, docker_run_id, tmp_path, unique):
    server, cluster, agent = start(spawn_server, tmp_path, unique)
    try:
        name = sleeping_service(server, cluster, unique, docker_run_id)
        resource = f"service/{cluster}/{name}"
        register(server, resource, 1, 3)
        policy = server.aws_ok(
            "application-autoscaling", "put-scaling-policy", "--policy-name", "step-out",
            "--service-namespace", "ecs", "--resource-id", resource, "--scalable-dimension", DIM,
            "--policy-type", "StepScaling", "--step-scaling-policy-configuration",
            '{"AdjustmentType": "ChangeInCapacity", "Cooldown": 60, "MetricAggregationType": "Average",'
            ' "StepAdjustments": [{"MetricIntervalLowerBound": 0, "ScalingAdjustment": 2}]}')
        arn = policy["PolicyARN"]
        assert arn.startswith("arn:aws:autoscaling:us-east-1:000000000000:scalingPolicy:"), arn
        assert arn.endswith(f":resource/ecs/{resource}:policyName/step-out"), arn
        server.aws_ok("cloudwatch", "put-metric-alarm", "--alarm-name", "queue-deep", "--namespace", "App",
                      "--metric-name", "Backlog", "--statistic", "Average", "--period", "60",
                      "--evaluation-periods", "1", "--threshold", "100",
                      "--comparison-operator", "GreaterThanThreshold", "--alarm-actions", arn)
        server.aws_ok("cloudwatch", "set-alarm-state", "--alarm-name", "queue-deep", "--state-value", "ALARM",
                      "--state-reason", "testing the step policy")
        s = wait_for(lambda: (lambda s: s if s["desiredCount"] == 3 else None)(service_of(server, cluster, name)),
                     30, 0.2, "desiredCount 3")
        assert any("by Application Auto Scaling" in e["message"] for e in s["events"]), s["events"][:3]
        [a] = activities(server, resource)
        assert a["Description"] == "Setting desired count to 3."
        assert a["Cause"] == "monitor alarm queue-deep in state ALARM triggered policy step-out"
        assert a["StatusMessage"] == "Successfully set desired count to 3. Change successfully fulfilled by ecs."
        assert a["StatusCode"] == "Successful"
        history = server.aws_ok("cloudwatch", "describe-alarm-history", "--alarm-name", "queue-deep",
                                "--history-item-type", "Action")["AlarmHistoryItems"]
        assert history[0]["HistorySummary"] == f"Successfully executed action {arn}"
        # The service follows: three tasks run.
        wait_for(lambda: service_of(server, cluster, name)["runningCount"] == 3, 60, 0.5, "three running tasks")
        cleanup(server, cluster, name)
    finally:
        agent.kill()


def test_an_at_action_raises_min_capacity_and_desired_count_follows(spawn_server, docker_run_id, tmp_path, unique):
    server, cluster, agent = start(spawn_server, tmp_path, unique)
    try:
        name = sleeping_service(server, cluster, unique, docker_run_id)
        resource = f"service/{cluster}/{name}"
        register(server, resource, 1, 4)
        at = dt.datetime.now(dt.timezone.utc).replace(microsecond=0) + dt.timedelta(seconds=60)
        server.aws_ok("application-autoscaling", "put-scheduled-action", "--service-namespace", "ecs",
                      "--resource-id", resource, "--scalable-dimension", DIM,
                      "--scheduled-action-name", "morning", "--schedule", f"at({at:%Y-%m-%dT%H:%M:%S})",
                      "--scalable-target-action", "MinCapacity=2")
        shown = server.aws_ok("application-autoscaling", "describe-scheduled-actions", "--service-namespace", "ecs",
                              "--resource-id", resource)["ScheduledActions"]
        assert shown[0]["ScalableTargetAction"] == {"MinCapacity": 2}
        assert service_of(server, cluster, name)["desiredCount"] == 1
        wait_for(lambda: service_of(server, cluster, name)["desiredCount"] == 2, 120, 0.5, "desiredCount 2")
        assert time.time() >= at.timestamp(), "fired before its time"
        target = server.aws_ok("application-autoscaling", "describe-scalable-targets", "--service-namespace", "ecs",
                               "--resource-ids", resource)["ScalableTargets"][0]
        assert target["MinCapacity"] == 2
        acts = activities(server, resource)
        assert acts[0]["Description"] == "Setting desired count to 2."
        assert acts[0]["Cause"] == "scheduled action name morning was triggered"
        assert acts[1]["Description"] == "Setting min capacity to 2"
        wait_for(lambda: service_of(server, cluster, name)["runningCount"] == 2, 60, 0.5, "two running tasks")
        cleanup(server, cluster, name)
    finally:
        agent.kill()


def test_target_tracking_scales_out_under_cpu_load_and_back_in(spawn_server, docker_run_id, tmp_path, unique):
    # High resolution: alarms of 10-second periods, ECS metrics every 10 s.
    server, cluster, agent = start(spawn_server, tmp_path, unique, "--appscaling-high-resolution")
    try:
        # Two busy loops until /tmp/stop exists, against `cpu: 64`: far above a 50 % target.
        burn = "while [ ! -f /tmp/stop ]; do :; done"
        container = busybox_container("burn", docker_run_id, cpu=64,
                                      command=["sh", "-c", f"({burn}) & ({burn}) & wait; sleep 600"])
        td = server.ecs.register_task_definition(family=unique("burn"),
                                                 containerDefinitions=[container])["taskDefinition"]
        name = unique("svc")
        server.ecs.create_service(cluster=cluster, serviceName=name, desiredCount=1,
                                  taskDefinition=td["taskDefinitionArn"])
        resource = f"service/{cluster}/{name}"
        register(server, resource, 1, 4)
        policy = server.aws_ok(
            "application-autoscaling", "put-scaling-policy", "--policy-name", "cpu50",
            "--service-namespace", "ecs", "--resource-id", resource, "--scalable-dimension", DIM,
            "--policy-type", "TargetTrackingScaling", "--target-tracking-scaling-policy-configuration",
            '{"TargetValue": 50.0, "PredefinedMetricSpecification": {"PredefinedMetricType": "ECSServiceAverageCPUUtilization"},'
            ' "ScaleOutCooldown": 10, "ScaleInCooldown": 10}')
        high, low = [a["AlarmName"] for a in policy["Alarms"]]
        assert high.startswith(f"TargetTracking-{resource}-AlarmHigh-"), high
        assert low.startswith(f"TargetTracking-{resource}-AlarmLow-"), low
        alarm = server.aws_ok("cloudwatch", "describe-alarms", "--alarm-names", high)["MetricAlarms"][0]
        assert (alarm["Period"], alarm["EvaluationPeriods"], alarm["Threshold"]) == (10, 3, 50.0)
        assert alarm["AlarmActions"] == [policy["PolicyARN"]]

        started = time.monotonic()
        wait_for(lambda: service_of(server, cluster, name)["desiredCount"] == 4, 240, 1, "scale-out to 4")
        out_after = time.monotonic() - started
        wait_for(lambda: service_of(server, cluster, name)["runningCount"] == 4, 90, 1, "four running tasks")

        # The load stops in every task: AlarmLow (15 periods below 45 %) scales back to 1.
        for task in server.ecs.list_tasks(cluster=cluster, serviceName=name)["taskArns"]:
            for cid in docker_ids({"gantry.task-arn": task}, stopped=False):
                docker("exec", cid, "touch", "/tmp/stop")
        wait_for(lambda: service_of(server, cluster, name)["desiredCount"] == 1, 400, 1, "scale-in to 1")
        acts = activities(server, resource)
        assert acts[0]["Description"] == "Setting desired count to 1.", acts[0]
        assert acts[0]["Cause"].startswith(f"monitor alarm {low} in state ALARM triggered policy cpu50"), acts[0]
        assert acts[-1]["Description"].startswith("Setting desired count to "), acts[-1]
        assert acts[-1]["Cause"].startswith(f"monitor alarm {high} in state ALARM triggered policy cpu50"), acts[-1]
        assert all(a["StatusCode"] == "Successful" for a in acts)
        events = [e["message"] for e in service_of(server, cluster, name)["events"]]
        assert any("desired count changed from 4 to 1 by Application Auto Scaling" in e for e in events), events[:5]
        print(f"desired count 4 {out_after:.0f} s after the policy was created (the load ran before it)")
        cleanup(server, cluster, name)
    finally:
        agent.kill()
