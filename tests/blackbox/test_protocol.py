"""The wire protocol itself: JSON 1.1 framing, errors, authentication, the admin endpoints.

These requests are sent with raw HTTP because no SDK would send them. Every error must be a
4xx with an ECS-style `__type`, never a 500 or a dropped connection.
"""

import re
import time

import pytest

from harness import DEFAULT_ACCOUNT, arn, wait_for


def assert_error(r, status, types):
    types = (types,) if isinstance(types, str) else types
    assert r.status == status, f"expected HTTP {status}, got {r}"
    assert "json" in r.headers.get("content-type", ""), r.headers
    body = r.json()
    assert isinstance(body, dict) and "__type" in body, body
    assert r.error_type in types, f"expected {types}, got {body}"
    return body


# ---- framing of successful calls -------------------------------------------------------------

def test_success_response_framing(gantry):
    r = gantry.raw("ListClusters", {})
    assert r.status == 200, r
    assert r.headers["content-type"].startswith("application/x-amz-json-1.1")
    assert r.headers.get("x-amzn-requestid"), r.headers
    assert r.json().get("clusterArns") == []


def test_error_response_has_request_id_and_lowercase_message(gantry):
    r = gantry.raw("DeleteCluster", {"cluster": "no-such-cluster-proto"})
    body = assert_error(r, 400, "ClusterNotFoundException")
    assert body["message"] == "Cluster not found."
    assert r.headers.get("x-amzn-requestid"), r.headers


def test_timestamps_are_epoch_seconds(gantry, unique):
    family = unique("ts")
    body = {"family": family, "containerDefinitions": [
        {"name": "app", "image": "busybox", "memory": 64}]}
    before = time.time()
    r = gantry.raw("RegisterTaskDefinition", body)
    assert r.status == 200, r
    registered_at = r.json()["taskDefinition"]["registeredAt"]
    # A JSON number of *seconds* (not millis, not an ISO string).
    assert isinstance(registered_at, (int, float)) and not isinstance(registered_at, bool)
    assert before - 60 <= registered_at <= time.time() + 60, registered_at


def test_unknown_fields_are_ignored(gantry, unique):
    name = unique("extra")
    r = gantry.raw("CreateCluster", {"clusterName": name, "someFutureField": {"x": 1}})
    assert r.status == 200, r
    assert r.json()["cluster"]["clusterName"] == name


def test_null_member_is_treated_as_absent(gantry):
    r = gantry.raw("CreateCluster", {"clusterName": None})
    assert r.status == 200, r
    assert r.json()["cluster"]["clusterName"] == "default"


# ---- malformed requests ----------------------------------------------------------------------

def test_unknown_operation(gantry):
    r = gantry.raw("FlyToTheMoon", {})
    assert_error(r, 400, "UnknownOperationException")


def test_target_of_another_service(gantry):
    r = gantry.raw(None, {}, target="DynamoDB_20120810.ListTables")
    assert_error(r, 400, "UnknownOperationException")


def test_missing_target_header(gantry):
    r = gantry.raw(None, {})
    assert_error(r, 400, "UnknownOperationException")


@pytest.mark.parametrize("body", [
    b'{"clusterName": ',
    b"not json at all",
    b'{"clusterName": "a",}',
    b"\xff\xfe\x00garbage",
])
def test_malformed_json(gantry, body):
    r = gantry.raw("CreateCluster", body)
    assert_error(r, 400, "SerializationException")


@pytest.mark.parametrize("op,body", [
    ("CreateCluster", {"clusterName": 123}),
    ("CreateCluster", {"clusterName": ["a"]}),
    ("CreateCluster", {"tags": {"key": "a", "value": "b"}}),
    ("ListClusters", {"maxResults": "ten"}),
    ("ListClusters", {"maxResults": True}),
    ("DescribeClusters", {"clusters": "abc"}),
    ("DescribeClusters", {"clusters": [1, 2]}),
    ("RegisterTaskDefinition", {"family": "f", "containerDefinitions": {"name": "x"}}),
    ("RegisterTaskDefinition", {"family": "f", "containerDefinitions": [
        {"name": "x", "image": "busybox", "memory": "lots"}]}),
    ("RegisterTaskDefinition", {"family": "f", "containerDefinitions": [
        {"name": "x", "image": "busybox", "memory": 64, "essential": "yes"}]}),
    ("PutAccountSetting", {"name": "containerInsights", "value": False}),
])
def test_wrong_json_type(gantry, op, body):
    r = gantry.raw(op, body)
    assert_error(r, 400, "SerializationException")


@pytest.mark.parametrize("body", [b"[]", b"null", b'"a string"', b"42"])
def test_non_object_body(gantry, body):
    r = gantry.raw("ListClusters", body)
    assert_error(r, 400, "SerializationException")


def test_array_is_not_read_positionally(gantry, ecs):
    # A JSON array must not be taken as the structure's members in order.
    r = gantry.raw("CreateCluster", b'["positional"]')
    assert_error(r, 400, "SerializationException")
    assert ecs.list_clusters()["clusterArns"] == []


def test_empty_body_is_not_a_server_error(gantry):
    r = gantry.raw("ListClusters", b"")
    assert r.status in (200, 400), r
    if r.status == 400:
        assert_error(r, 400, "SerializationException")


def test_missing_required_family_is_ecs_validation(gantry):
    # ECS validates required members itself: a missing family is "Family can not be blank.".
    r = gantry.raw("RegisterTaskDefinition", {"containerDefinitions": [
        {"name": "x", "image": "busybox", "memory": 64}]})
    body = assert_error(r, 400, "ClientException")
    assert body["message"] == "Family can not be blank."


def test_missing_required_container_definitions(gantry):
    r = gantry.raw("RegisterTaskDefinition", {"family": "no-containers"})
    body = assert_error(r, 400, "ClientException")
    assert body["message"] == "Container list cannot be empty."


def test_missing_required_member_elsewhere_is_a_client_error(gantry):
    r = gantry.raw("DescribeTaskDefinition", {})
    assert_error(r, 400, ("ClientException", "InvalidParameterException"))
    r = gantry.raw("DeleteCluster", {})
    assert_error(r, 400, ("ClientException", "InvalidParameterException"))


# ---- authentication --------------------------------------------------------------------------

def test_missing_authorization_header(gantry):
    r = gantry.raw("ListClusters", {}, sign=False)
    assert_error(r, 400, "MissingAuthenticationTokenException")


@pytest.mark.parametrize("auth", [
    "AWS4-HMAC-SHA256",
    "AWS4-HMAC-SHA256 garbage",
    "AWS4-HMAC-SHA256 Credential=test/20240101/us-east-1/ecs/aws4_request",
    "AWS4-HMAC-SHA256 Credential=test/us-east-1/ecs, SignedHeaders=host;x-amz-date, "
    "Signature=deadbeef",
    "AWS4-HMAC-SHA256 SignedHeaders=host;x-amz-date, Signature=deadbeef",
])
def test_malformed_authorization_header(gantry, auth):
    headers = {"Authorization": auth, "X-Amz-Date": time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())}
    r = gantry.raw("ListClusters", {}, sign=False, headers=headers)
    assert_error(r, 400, "IncompleteSignatureException")


@pytest.mark.parametrize("auth", ["Bearer abc", "Basic dGVzdDp0ZXN0"])
def test_non_sigv4_authorization_header(gantry, auth):
    r = gantry.raw("ListClusters", {}, sign=False, headers={"Authorization": auth})
    assert_error(r, 400, ("MissingAuthenticationTokenException", "IncompleteSignatureException"))


def test_region_comes_from_credential_scope(gantry, unique):
    name = unique("scope")
    r = gantry.raw("CreateCluster", {"clusterName": name}, region="ap-southeast-2")
    assert r.status == 200, r
    assert r.json()["cluster"]["clusterArn"] == arn("cluster", name, "ap-southeast-2")


# ---- admin endpoints, binary surface ---------------------------------------------------------

def test_health(gantry):
    assert gantry.http("GET", "/_gantry/health").status == 200


def test_reset_wipes_state(gantry, ecs, unique):
    name = unique("wipe")
    ecs.create_cluster(clusterName=name)
    ecs.register_task_definition(family=name, containerDefinitions=[
        {"name": "a", "image": "busybox", "memory": 64}])
    ecs.put_account_setting(name="containerInsights", value="enabled")
    assert gantry.http("POST", "/_gantry/reset").status == 200
    assert ecs.list_clusters()["clusterArns"] == []
    assert ecs.list_task_definition_families(status="ALL")["families"] == []
    assert ecs.list_account_settings(name="containerInsights")["settings"] == []


def test_reset_is_disabled_by_default(spawn_server):
    s = spawn_server("noreset", enable_reset=False)
    assert s.http("POST", "/_gantry/reset").status == 404
    assert s.http("GET", "/_gantry/health").status == 200


def test_account_id_flag(spawn_server):
    s = spawn_server("acct", extra_args=("--account-id", "123456789012"))
    c = s.ecs.create_cluster(clusterName="acct-flag")["cluster"]
    assert c["clusterArn"] == arn("cluster", "acct-flag", account="123456789012")


def test_account_id_env(spawn_server):
    s = spawn_server("acctenv", env={"GANTRY_ACCOUNT_ID": "210987654321"})
    c = s.ecs.create_cluster(clusterName="acct-env")["cluster"]
    assert c["clusterArn"] == arn("cluster", "acct-env", account="210987654321")


def test_default_account_id(gantry, ecs, unique):
    name = unique("acct")
    c = ecs.create_cluster(clusterName=name)["cluster"]
    assert c["clusterArn"] == f"arn:aws:ecs:us-east-1:{DEFAULT_ACCOUNT}:cluster/{name}"


def test_up_serves_api_and_enables_reset(spawn_server):
    s = spawn_server("up", command="up")
    s.ecs.create_cluster(clusterName="up-cluster")
    assert s.ecs.list_clusters()["clusterArns"] == [arn("cluster", "up-cluster")]
    assert s.http("POST", "/_gantry/reset").status == 200
    assert s.ecs.list_clusters()["clusterArns"] == []


def test_start_banner_prints_endpoint_and_aws_example(spawn_server):
    s = spawn_server("banner")

    def banner():
        text = s.log_text()
        return f"127.0.0.1:{s.port}" in text and re.search(r"\baws\b.*\becs\b", text)

    try:
        wait_for(banner, 5, what="the start banner")
    except TimeoutError:
        pytest.fail(f"no endpoint/aws example printed on start:\n{s.log_text()}")
