"""Signatures verified for real: `gantry server` (auth sigv4 by default) accepts only requests
signed by a key it knows, and answers every refusal with the code the service's SDK expects, in
the service's own protocol: ECS (JSON 1.1, `__type`) and STS (query, `<Error><Code>`).

botocore is the signing oracle: every request here is signed by botocore's own SigV4 signer
(header or presigned), then changed where a case says so."""

from __future__ import annotations

import datetime
import json
import os
import stat
import subprocess
import urllib.parse
import xml.etree.ElementTree as ET

import botocore.auth
import pytest
from botocore.auth import SigV4Auth, SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from harness import DEFAULT_ACCOUNT, TARGET_PREFIX, aws_cli

ECS_BODY = b"{}"
STS_BODY = b"Action=GetCallerIdentity&Version=2011-06-15"


@pytest.fixture
def secure(spawn_server):
    """A `gantry server` with its default auth (sigv4)."""
    return spawn_server("secure", auth=None)


def root_key(server) -> Credentials:
    text = (server.data_dir / "root-credentials").read_text()
    values = dict(
        line.split(" = ", 1) for line in text.splitlines() if " = " in line and not line.startswith("#")
    )
    return Credentials(values["aws_access_key_id"], values["aws_secret_access_key"])


def request(kind: str, server) -> AWSRequest:
    if kind == "ecs":
        return AWSRequest("POST", server.endpoint + "/", data=ECS_BODY, headers={
            "Content-Type": "application/x-amz-json-1.1",
            "X-Amz-Target": f"{TARGET_PREFIX}.ListClusters",
        })
    return AWSRequest("POST", server.endpoint + "/", data=STS_BODY, headers={
        "Content-Type": "application/x-www-form-urlencoded; charset=utf-8",
    })


def sign(req: AWSRequest, creds: Credentials, service: str, region: str = "us-east-1",
         at: datetime.datetime | None = None, monkeypatch=None, signer=SigV4Auth, **kw):
    if at is not None:
        monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda: at)
    signer(creds, service, region, **kw).add_auth(req)
    if at is not None:
        monkeypatch.undo()
    return req


def send(server, req: AWSRequest, body: bytes | None = None):
    """Sends the prepared request as it is (headers and body), with `body` swapped in if given."""
    prepared = req.prepare()
    url = urllib.parse.urlsplit(prepared.url)
    path = url.path + (f"?{url.query}" if url.query else "")
    headers = {k: v for k, v in prepared.headers.items()}
    data = prepared.body if body is None else body
    if isinstance(data, str):
        data = data.encode()
    headers["Content-Length"] = str(len(data or b""))
    return server.http(prepared.method, path, body=data or b"", headers=headers)


def error_of(r) -> tuple[str, str]:
    """(code, message) of an error response, JSON or query XML."""
    if r.headers.get("content-type", "").startswith("application/x-amz-json"):
        body = r.json()
        return body["__type"].split("#")[-1], body.get("message") or body.get("Message", "")
    root = ET.fromstring(r.body)
    assert root.tag.split("}")[-1] == "ErrorResponse", r.body
    err = root.find("{*}Error")
    assert err.findtext("{*}Type") == "Sender", r.body
    assert root.findtext("{*}RequestId"), r.body
    return err.findtext("{*}Code"), err.findtext("{*}Message")


def assert_refused(r, status: int, code: str, message: str = ""):
    got_code, got_message = error_of(r)
    assert (r.status, got_code) == (status, code), f"{r.status} {got_code}: {got_message}"
    assert message in got_message, got_message


# ---- accepted --------------------------------------------------------------------------------

def test_the_root_key_is_written_once_private_and_works_with_the_cli(secure):
    path = secure.data_dir / "root-credentials"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    text = path.read_text()
    assert "[default]" in text and "aws_access_key_id = AKIA" in text
    env = secure.cli_env()
    del env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"]
    env["AWS_SHARED_CREDENTIALS_FILE"] = str(path)

    def cli(*args):
        p = subprocess.run([aws_cli(), *args, "--output", "json"], env=env, capture_output=True,
                           text=True, timeout=60)
        assert p.returncode == 0, p.stderr
        return json.loads(p.stdout)

    me = cli("sts", "get-caller-identity")
    assert me == {"UserId": DEFAULT_ACCOUNT, "Account": DEFAULT_ACCOUNT,
                  "Arn": f"arn:aws:iam::{DEFAULT_ACCOUNT}:root"}
    assert cli("ecs", "create-cluster", "--cluster-name", "signed")["cluster"]["status"] == "ACTIVE"
    # The key survives a restart: the same file, the same key, still accepted.
    secure.stop()
    secure.start()
    assert path.read_text() == text
    env["AWS_ENDPOINT_URL"] = secure.endpoint
    assert cli("ecs", "list-clusters")["clusterArns"] == [
        f"arn:aws:ecs:us-east-1:{DEFAULT_ACCOUNT}:cluster/signed"]


@pytest.mark.parametrize("kind,service", [("ecs", "ecs"), ("sts", "sts")])
def test_a_request_signed_by_the_root_key_is_accepted(secure, kind, service):
    r = send(secure, sign(request(kind, secure), root_key(secure), service))
    assert r.status == 200, r.body
    if kind == "sts":
        assert ET.fromstring(r.body).find(".//{*}Arn").text == f"arn:aws:iam::{DEFAULT_ACCOUNT}:root"


def test_a_presigned_url_is_accepted_until_it_expires(secure, monkeypatch):
    query = "Action=GetCallerIdentity&Version=2011-06-15"
    url = f"{secure.endpoint}/?{query}"
    ok = sign(AWSRequest("GET", url), root_key(secure), "sts", signer=SigV4QueryAuth, expires=60)
    r = send(secure, ok)
    assert r.status == 200, r.body
    assert ET.fromstring(r.body).find(".//{*}Account").text == DEFAULT_ACCOUNT

    wrong = Credentials(root_key(secure).access_key, "not-the-secret")
    r = send(secure, sign(AWSRequest("GET", url), wrong, "sts", signer=SigV4QueryAuth, expires=60))
    assert_refused(r, 403, "SignatureDoesNotMatch")

    two_minutes_ago = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(minutes=2)
    old = sign(AWSRequest("GET", url), root_key(secure), "sts", at=two_minutes_ago,
               monkeypatch=monkeypatch, signer=SigV4QueryAuth, expires=60)
    assert_refused(send(secure, old), 403, "SignatureDoesNotMatch", "expired")


# ---- refused, in each protocol ---------------------------------------------------------------

# (kind, the service's SigV4 name, HTTP status and codes of a bad signature, an unknown key, no
# signature)
PROTOCOLS = [
    ("ecs", "ecs", 400, "InvalidSignatureException", "UnrecognizedClientException",
     "MissingAuthenticationTokenException"),
    ("sts", "sts", 403, "SignatureDoesNotMatch", "InvalidClientTokenId", "MissingAuthenticationToken"),
]


@pytest.mark.parametrize("kind,service,status,bad,unknown,missing", PROTOCOLS)
def test_refusals(secure, monkeypatch, kind, service, status, bad, unknown, missing):
    key = root_key(secure)

    # A tampered body.
    req = sign(request(kind, secure), key, service)
    tampered = b'{"maxResults": 5}' if kind == "ecs" else STS_BODY + b"&Extra=1"
    assert_refused(send(secure, req, body=tampered), status, bad, "signature we calculated")

    # A wrong secret.
    wrong = Credentials(key.access_key, key.secret_key[:-1] + ("x" if key.secret_key[-1] != "x" else "y"))
    assert_refused(send(secure, sign(request(kind, secure), wrong, service)), status, bad,
                   "signature we calculated")

    # A date 16 minutes old, and 16 minutes ahead.
    now = datetime.datetime.now(datetime.timezone.utc)
    old = sign(request(kind, secure), key, service, at=now - datetime.timedelta(minutes=16),
               monkeypatch=monkeypatch)
    assert_refused(send(secure, old), status, bad, "Signature expired")
    ahead = sign(request(kind, secure), key, service, at=now + datetime.timedelta(minutes=16),
                 monkeypatch=monkeypatch)
    assert_refused(send(secure, ahead), status, bad, "Signature not yet current")

    # The wrong region: signed for eu-west-1, presented as us-west-2.
    req = sign(request(kind, secure), key, service, region="eu-west-1")
    req.headers["Authorization"] = req.headers["Authorization"].replace("/eu-west-1/", "/us-west-2/")
    assert_refused(send(secure, req), status, bad, "signature we calculated")

    # The wrong service: signed for the other one.
    other = "sts" if service == "ecs" else "ecs"
    assert_refused(send(secure, sign(request(kind, secure), key, other)), status, bad,
                   f"Credential should be scoped to correct service: '{service}'")

    # A signed header missing from the request.
    req = request(kind, secure)
    req.headers["X-Gantry-Signed"] = "1"
    sign(req, key, service)
    del req.headers["X-Gantry-Signed"]
    assert_refused(send(secure, req), status, bad, "signature we calculated")

    # An unknown key.
    r = send(secure, sign(request(kind, secure), Credentials("AKIAUNKNOWNKEY123456", "x"), service))
    assert_refused(r, 403 if status == 403 else 400, unknown,
                   "The security token included in the request is invalid")

    # A session token the key was not issued with.
    r = send(secure, sign(request(kind, secure), Credentials(key.access_key, key.secret_key, "tok"),
                          service))
    assert_refused(r, 403 if status == 403 else 400, unknown)

    # No signature at all.
    r = send(secure, request(kind, secure))
    assert_refused(r, 403 if status == 403 else 400, missing)


def test_random_credentials_are_refused_through_the_cli(secure):
    for args, code in ((("sts", "get-caller-identity"), "InvalidClientTokenId"),
                       (("ecs", "list-clusters"), "UnrecognizedClientException")):
        rc, err = secure.aws(*args)  # cli_env signs with test/test, a key no one issued
        assert rc != 0
        assert f"({code})" in err, err


def test_gantry_up_accepts_any_credentials(spawn_server):
    up = spawn_server("up", command="up")
    assert not (up.data_dir / "root-credentials").exists()
    assert up.aws_ok("ecs", "list-clusters")["clusterArns"] == []
    me = up.aws_ok("sts", "get-caller-identity")
    assert me["Arn"] == f"arn:aws:iam::{DEFAULT_ACCOUNT}:root"


def test_unknown_services_and_actions_get_their_protocols_errors(secure):
    key = root_key(secure)
    # A query action STS does not have.
    req = AWSRequest("POST", secure.endpoint + "/", data=b"Action=Frobnicate&Version=2011-06-15",
                     headers={"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"})
    assert_refused(send(secure, sign(req, key, "sts")), 400, "InvalidAction", "Frobnicate")
    # A service Gantry does not serve, in JSON 1.0 (as a JSON 1.0 SDK sends it).
    req = AWSRequest("POST", secure.endpoint + "/", data=b"{}", headers={
        "Content-Type": "application/x-amz-json-1.0", "X-Amz-Target": "DynamoDB_20120810.ListTables"})
    r = send(secure, sign(req, key, "dynamodb"))
    assert_refused(r, 400, "UnknownOperationException", "dynamodb")
    assert r.headers["content-type"] == "application/x-amz-json-1.0"
