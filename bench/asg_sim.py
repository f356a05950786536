#!/usr/bin/env python3
"""Cluster auto scaling from zero with `gantry-sim` instances, against a fleet already there, in
one run.

`.venv/bin/python bench/asg_sim.py [--tasks 100] [--no-build]`   (needs boto3)

Starts `gantry server`, then for each of two clusters creates a launch configuration
(`gantry-sim`, t3.medium: 3 tasks of 1,024 MiB fit one), an Auto Scaling group, a capacity
provider with managed scaling on it, and a service of N tasks through the provider, and times
CreateService until N tasks are RUNNING (DescribeServices' runningCount, polled every 20 ms):
  * baseline: the group already at the instances the tasks need, all registered;
  * from zero: the group at 0 instances; the tasks wait in PROVISIONING, managed scaling sets
    the desired capacity, the group launches simulated agents, the tasks are placed.
"""
import argparse
import time

import boto3

from common import release_binary, start_server

PER_INSTANCE = 3


def poll(pred, timeout=300, interval=0.02):
    end = time.time() + timeout
    while time.time() < end:
        v = pred()
        if v:
            return v
        time.sleep(interval)
    raise SystemExit("timed out")


def run(port, name, tasks, preprovision):
    kw = dict(endpoint_url=f"http://127.0.0.1:{port}", region_name="us-east-1",
              aws_access_key_id="bench", aws_secret_access_key="bench")
    asg, ecs = boto3.client("autoscaling", **kw), boto3.client("ecs", **kw)
    need = -(-tasks // PER_INSTANCE)
    asg.create_launch_configuration(LaunchConfigurationName=name, ImageId="gantry-sim",
                                    InstanceType="t3.medium", UserData=f"ECS_CLUSTER={name}")
    asg.create_auto_scaling_group(AutoScalingGroupName=name, LaunchConfigurationName=name, MinSize=0,
                                  MaxSize=need * 2, DesiredCapacity=need if preprovision else 0,
                                  AvailabilityZones=["us-east-1a", "us-east-1b"])
    arn = asg.describe_auto_scaling_groups(AutoScalingGroupNames=[name])["AutoScalingGroups"][0]["AutoScalingGroupARN"]
    ecs.create_cluster(clusterName=name)
    ecs.create_capacity_provider(name=f"{name}-cp", autoScalingGroupProvider={
        "autoScalingGroupArn": arn, "managedScaling": {"status": "ENABLED", "targetCapacity": 100},
        "managedTerminationProtection": "DISABLED"})
    ecs.put_cluster_capacity_providers(cluster=name, capacityProviders=[f"{name}-cp"],
                                       defaultCapacityProviderStrategy=[{"capacityProvider": f"{name}-cp", "weight": 1}])
    ecs.register_task_definition(family=name, containerDefinitions=[
        {"name": "app", "image": "busybox", "cpu": 128, "memory": 1024}])
    if preprovision:
        poll(lambda: len(ecs.list_container_instances(cluster=name, maxResults=100)["containerInstanceArns"]) == need)
    t0 = time.perf_counter()
    ecs.create_service(cluster=name, serviceName="web", taskDefinition=name, desiredCount=tasks,
                       capacityProviderStrategy=[{"capacityProvider": f"{name}-cp", "weight": 1}])
    poll(lambda: ecs.describe_services(cluster=name, services=["web"])["services"][0]["runningCount"] == tasks)
    elapsed = time.perf_counter() - t0
    instances = len(asg.describe_auto_scaling_groups(AutoScalingGroupNames=[name])["AutoScalingGroups"][0]["Instances"])
    return elapsed, instances


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tasks", type=int, default=100)
    ap.add_argument("--no-build", action="store_true")
    args = ap.parse_args()
    binary = release_binary(not args.no_build)
    proc, port, _tmp = start_server(binary)
    try:
        base, n0 = run(port, "warm", args.tasks, True)
        cold, n1 = run(port, "cold", args.tasks, False)
    finally:
        proc.kill()
        proc.wait()
    print(f"{args.tasks} tasks RUNNING after CreateService ({binary}):")
    print(f"  baseline, {n0} gantry-sim instances already registered: {base:6.2f} s")
    print(f"  from 0 instances (managed scaling launched {n1}):        {cold:6.2f} s")
    print(f"  cost of scaling from zero:                              {cold - base:6.2f} s")


if __name__ == "__main__":
    main()
