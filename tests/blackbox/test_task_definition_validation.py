"""RegisterTaskDefinition validation: ECS's exception types and (where known) exact messages.

Messages marked [REAL] in the research notes are compared exactly; for the others only the
exception type is checked (and that the message names the bad value where that makes sense).
"""

import pytest

from harness import expect_error, simple_container

CLIENT = "ClientException"


def register(ecs, **kw):
    return lambda: ecs.register_task_definition(**kw)


def fargate(family, cpu="256", memory="512", containers=None, **kw):
    body = {"family": family, "networkMode": "awsvpc", "requiresCompatibilities": ["FARGATE"],
            "containerDefinitions": containers or [{"name": "a", "image": "busybox"}]}
    if cpu is not None:
        body["cpu"] = cpu
    if memory is not None:
        body["memory"] = memory
    body.update(kw)
    return body


# ---- containers ------------------------------------------------------------------------------

@pytest.mark.parametrize("container", [
    {"name": "noimage", "memory": 64},
    {"name": "emptyimage", "image": "", "memory": 64},
])
def test_missing_image(ecs, unique, container):
    expect_error(register(ecs, family=unique("img"), containerDefinitions=[container]),
                 CLIENT, "Container.image should not be null or empty.")


@pytest.mark.parametrize("container", [
    {"image": "busybox", "memory": 64},
    {"name": "", "image": "busybox", "memory": 64},
])
def test_missing_container_name(ecs, unique, container):
    expect_error(register(ecs, family=unique("name"), containerDefinitions=[container]),
                 CLIENT, "Container.name should not be null or empty.")


@pytest.mark.parametrize("bad", ["has space", "slash/name", "dot.name", "colon:name", "ünï"])
def test_container_name_invalid_characters(ecs, unique, bad):
    expect_error(register(ecs, family=unique("cname"),
                          containerDefinitions=[simple_container(bad)]),
                 CLIENT, "Container.name contains invalid characters.")


def test_container_name_length(ecs, unique):
    ecs.register_task_definition(family=unique("clen"),
                                 containerDefinitions=[simple_container("c" * 255)])
    expect_error(register(ecs, family=unique("clen"),
                          containerDefinitions=[simple_container("c" * 256)]), CLIENT)


def test_duplicate_container_names(gantry, ecs, unique):
    containers = [simple_container("twin"), simple_container("twin")]
    msg = "Container names must be unique within a Task Definition."
    expect_error(register(ecs, family=unique("dup"), containerDefinitions=containers),
                 CLIENT, msg)
    # Same through the CLI: exit 255 and the AWS-style message on stderr.
    rc, err = gantry.aws("ecs", "register-task-definition", "--family", unique("dupcli"),
                         "--container-definitions",
                         '[{"name":"twin","image":"busybox","memory":64},'
                         '{"name":"twin","image":"busybox","memory":64}]')
    assert rc == 255, (rc, err)
    assert ("An error occurred (ClientException) when calling the RegisterTaskDefinition "
            f"operation: {msg}") in err


def test_empty_container_list(ecs, unique):
    expect_error(register(ecs, family=unique("empty"), containerDefinitions=[]),
                 CLIENT, "Container list cannot be empty.")


def test_too_many_containers(ecs, unique):
    ecs.register_task_definition(family=unique("ten"), containerDefinitions=[
        simple_container(f"c{i}", memory=32) for i in range(10)])
    expect_error(register(ecs, family=unique("eleven"), containerDefinitions=[
        simple_container(f"c{i}", memory=32) for i in range(11)]),
        CLIENT, "Too many containers.")


def test_image_too_long(ecs, unique):
    image = "registry.example.com/" + "a" * 240 + ":tag"
    assert len(image) > 255
    expect_error(register(ecs, family=unique("longimg"),
                          containerDefinitions=[simple_container(image=image)]),
                 CLIENT, "Container.image should be 255 characters or less")


def test_ec2_container_needs_memory(ecs, unique):
    expect_error(register(ecs, family=unique("nomem"), containerDefinitions=[
        {"name": "hungry", "image": "busybox"}]),
        CLIENT, "Invalid setting for container 'hungry'. At least one of 'memory' or "
                "'memoryReservation' must be specified.")


def test_ec2_container_memory_reservation_alone_is_enough(ecs, unique):
    td = ecs.register_task_definition(family=unique("resv"), containerDefinitions=[
        {"name": "soft", "image": "busybox", "memoryReservation": 128}])["taskDefinition"]
    assert td["containerDefinitions"][0]["memoryReservation"] == 128


def test_memory_reservation_above_memory(ecs, unique):
    err = expect_error(register(ecs, family=unique("resv"), containerDefinitions=[
        {"name": "inverted", "image": "busybox", "memory": 128, "memoryReservation": 256}]),
        CLIENT)
    assert "memoryReservation" in err["Message"], err


def test_no_essential_container(ecs, unique):
    expect_error(register(ecs, family=unique("noess"), containerDefinitions=[
        simple_container("a", essential=False), simple_container("b", essential=False)]), CLIENT)


def test_container_memory_above_task_memory(ecs, unique):
    expect_error(register(ecs, family=unique("big"), memory="512", containerDefinitions=[
        simple_container("big", memory=1024)]),
        CLIENT, "The 'memory' setting for container 'big' is greater than for the task.")


def test_container_cpu_sum_above_task_cpu(ecs, unique):
    expect_error(register(ecs, family=unique("cpu"), cpu="512", memory="1024",
                          containerDefinitions=[simple_container("a", cpu=300),
                                                simple_container("b", cpu=300)]),
                 CLIENT, "The sum of all container 'cpu' values cannot be greater than the "
                         "value of the task 'cpu'.")


@pytest.mark.parametrize("port", [0, 70000, -1])
def test_invalid_container_port(ecs, unique, port):
    expect_error(register(ecs, family=unique("port"), containerDefinitions=[
        simple_container("porty", portMappings=[{"containerPort": port}])]),
        CLIENT, "Invalid 'containerPort' setting for container 'porty'.")


def test_awsvpc_host_port_must_match(ecs, unique):
    expect_error(register(ecs, family=unique("awsvpc"), networkMode="awsvpc",
                          containerDefinitions=[simple_container(
                              portMappings=[{"containerPort": 80, "hostPort": 8080}])]),
                 CLIENT, "When networkMode=awsvpc, the host ports and container ports in port "
                         "mappings must match.")


def test_awsvpc_hostname_unsupported(ecs, unique):
    expect_error(register(ecs, family=unique("host"), networkMode="awsvpc",
                          containerDefinitions=[simple_container(hostname="web")]),
                 CLIENT, "hostname is not supported on container when networkMode=awsvpc.")


# ---- family ----------------------------------------------------------------------------------

@pytest.mark.parametrize("bad", ["has space", "colon:family", "dot.family", "slash/family", "é"])
def test_family_invalid_characters(ecs, bad):
    expect_error(register(ecs, family=bad, containerDefinitions=[simple_container()]),
                 CLIENT, "Family contains invalid characters.")


def test_family_blank(ecs):
    expect_error(register(ecs, family="", containerDefinitions=[simple_container()]),
                 CLIENT, "Family can not be blank.")


def test_family_length(ecs):
    ok = "f" * 255
    td = ecs.register_task_definition(family=ok,
                                      containerDefinitions=[simple_container()])["taskDefinition"]
    assert td["family"] == ok
    expect_error(register(ecs, family="f" * 256, containerDefinitions=[simple_container()]),
                 CLIENT)


# ---- task size -------------------------------------------------------------------------------

@pytest.mark.parametrize("cpu", ["abc", "1 potato", "-256", "1.5.2 vCPU"])
def test_invalid_task_cpu(ecs, unique, cpu):
    expect_error(register(ecs, family=unique("tcpu"), cpu=cpu, memory="1024",
                          containerDefinitions=[simple_container()]),
                 CLIENT, "Invalid 'cpu' setting for task.")


@pytest.mark.parametrize("memory", ["lots", "1 TB?", "-512"])
def test_invalid_task_memory(ecs, unique, memory):
    expect_error(register(ecs, family=unique("tmem"), cpu="256", memory=memory,
                          containerDefinitions=[simple_container()]), CLIENT)


@pytest.mark.parametrize("cpu,memory", [
    ("256", "4096"), ("512", "512"), ("1024", "1024"), ("2048", "2048"), ("4096", "7168"),
    ("8192", "18432"), ("16384", "36864"), ("128", "512"), ("3000", "8192"),
])
def test_invalid_fargate_combination(ecs, unique, cpu, memory):
    expect_error(register(ecs, **fargate(unique("combo"), cpu=cpu, memory=memory)),
                 CLIENT, f"No Fargate configuration exists for given values: {cpu} CPU, "
                         f"{memory} memory. See the Amazon ECS documentation for the valid values.")


def test_fargate_requires_task_cpu(ecs, unique):
    expect_error(register(ecs, **fargate(unique("nocpu"), cpu=None)),
                 CLIENT, "Fargate requires that 'cpu' be defined at the task level.")


def test_fargate_requires_task_memory(ecs, unique):
    expect_error(register(ecs, **fargate(unique("nomem"), memory=None)),
                 CLIENT, "Fargate requires that 'memory' be defined at the task level.")


@pytest.mark.parametrize("mode", ["bridge", "host", "none", None])
def test_fargate_requires_awsvpc(gantry, ecs, unique, mode):
    body = fargate(unique("netmode"))
    if mode is None:
        del body["networkMode"]
    else:
        body["networkMode"] = mode
    expect_error(register(ecs, **body), CLIENT,
                 "Fargate only supports network mode \u2018awsvpc\u2019.")


def test_invalid_network_mode(ecs, unique):
    expect_error(register(ecs, family=unique("net"), networkMode="carrier-pigeon",
                          containerDefinitions=[simple_container()]),
                 (CLIENT, "InvalidParameterException"))


def test_invalid_requires_compatibilities(ecs, unique):
    expect_error(register(ecs, family=unique("compat"), requiresCompatibilities=["MARS"],
                          containerDefinitions=[simple_container()]),
                 (CLIENT, "InvalidParameterException"))


def test_nothing_is_stored_after_a_rejected_registration(ecs, unique):
    family = unique("atomic")
    with pytest.raises(Exception):
        ecs.register_task_definition(family=family, containerDefinitions=[
            simple_container("x"), simple_container("x")])
    assert ecs.list_task_definition_families(familyPrefix=family, status="ALL")["families"] == []
    td = ecs.register_task_definition(family=family,
                                      containerDefinitions=[simple_container()])["taskDefinition"]
    assert td["revision"] == 1
