"""Never a panic, never a 500: hostile but well-typed input to every operation in scope.

Bodies are generated from botocore's ECS model with a fixed seed, so a run is reproducible;
strings include multi-byte UTF-8, NUL, over-long values and ARN look-alikes. Any answer other
than 200 or a 4xx ECS error (a 5xx, a dropped connection, a body without `__type`) fails.
"""

import json
import random

import botocore.session
import pytest

OPS = [
    "CreateCluster", "DescribeClusters", "ListClusters", "UpdateCluster", "UpdateClusterSettings",
    "PutClusterCapacityProviders", "DeleteCluster", "CreateCapacityProvider",
    "DescribeCapacityProviders", "UpdateCapacityProvider", "DeleteCapacityProvider",
    "RegisterTaskDefinition", "DescribeTaskDefinition", "ListTaskDefinitions",
    "ListTaskDefinitionFamilies", "DeregisterTaskDefinition", "DeleteTaskDefinitions",
    "TagResource", "UntagResource", "ListTagsForResource", "PutAttributes", "DeleteAttributes",
    "ListAttributes", "RegisterContainerInstance", "DeregisterContainerInstance",
    "DescribeContainerInstances", "ListContainerInstances", "PutAccountSetting",
    "PutAccountSettingDefault", "ListAccountSettings", "DeleteAccountSetting",
]

STRINGS = [
    "", "ü", "aüb", "ünïcode-ßtring", "日本語のクラスター", "😀😀😀", "\u0000", "a" * 300, "aws:x",
    "arn:", "::::", "/", "x:0", "x:-1", "x:99999999999999999999", "1 vCPU", "0.5 GB", "-1",
    "arn:aws:ecs:us-east-1:000000000000:cluster/ü",
    "arn:aws:ecs:us-east-1:000000000000:task-definition/ü:1",
    "arn:aws:ecs:us-east-1:000000000000:container-instance/ü/ü",
    "arn:aws:ecs:us-east-1:000000000000:capacity-provider/ü",
]
INTEGERS = [0, -1, 2 ** 31, 2 ** 63, -(2 ** 63) - 1, 10 ** 30]


class Generator:
    def __init__(self, seed):
        self.rng = random.Random(seed)

    def value(self, shape, depth=0):
        rng, t = self.rng, shape.type_name
        if t == "string":
            return rng.choice(STRINGS + list(shape.enum or []))
        if t in ("integer", "long"):
            return rng.choice(INTEGERS)
        if t == "boolean":
            return rng.choice([True, False])
        if t in ("double", "float"):
            return rng.choice([0.5, -1e308, 1e308])
        if t == "timestamp":
            return rng.choice([0, -1, 1e20])
        if t == "list":
            n = 0 if depth > 4 else rng.choice([0, 1, 2, 11])
            return [self.value(shape.member, depth + 1) for _ in range(n)]
        if t == "map":
            return {rng.choice(STRINGS): self.value(shape.value, depth + 1) for _ in range(2)}
        if t == "structure":
            if depth > 4:
                return {}
            return {k: self.value(v, depth + 1) for k, v in shape.members.items()
                    if k in shape.required_members or rng.random() < 0.7}
        return None


@pytest.fixture(scope="module")
def model():
    return botocore.session.get_session().get_service_model("ecs")


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_hostile_input_never_crashes(gantry, model, seed):
    gen = Generator(seed)
    problems = []
    for _ in range(400):
        op = gen.rng.choice(OPS)
        body = gen.value(model.operation_model(op).input_shape)
        try:
            r = gantry.raw(op, body)
        except OSError as e:
            problems.append((op, body, f"connection error: {e!r}"))
            continue
        if r.status == 200:
            continue
        if r.status != 400 or not r.error_type:
            problems.append((op, body, f"HTTP {r.status}: {r.body[:200]!r}"))
        if gantry.proc.poll() is not None:
            problems.append((op, body, "server exited"))
            break
    assert not problems, "\n".join(
        f"{op} {json.dumps(body, ensure_ascii=True)[:300]} -> {what}"
        for op, body, what in problems[:5]) + f"\n({len(problems)} in all)\npanics: " + \
        "\n".join(gantry.panics())


@pytest.mark.parametrize("op,body", [
    ("CreateCluster", {"clusterName": "ok", "tags": [{"key": "ünïcode", "value": "v"}]}),
    ("TagResource", {"resourceArn": "arn:aws:ecs:us-east-1:000000000000:cluster/x",
                     "tags": [{"key": "ünïcode", "value": "v"}]}),
    ("CreateCluster", {"clusterName": "日本語"}),
    ("RegisterTaskDefinition", {"family": "ünï", "containerDefinitions": [
        {"name": "ünï", "image": "ü", "memory": 64}]}),
    ("PutAccountSetting", {"name": "ünïcode", "value": "ü"}),
])
def test_multibyte_strings_are_validated_not_crashed_on(gantry, op, body):
    try:
        r = gantry.raw(op, body)
    except OSError as e:
        pytest.fail(f"connection dropped ({e!r}); server panics: {gantry.panics()}")
    assert r.status in (200, 400), r
    if r.status == 400:
        assert r.error_type, r
