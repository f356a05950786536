#!/usr/bin/env python3
"""Signs a fixed set of requests with botocore's SigV4Auth and SigV4QueryAuth and writes them as
crates/gantry-sigv4/tests/it/botocore-vectors.json, the oracle gantry-sigv4's tests verify against.

    python3 -m venv /tmp/boto && /tmp/boto/bin/pip install botocore==1.44.8
    /tmp/boto/bin/python tools/sigv4-vectors.py

Fixed key and time, so the output is reproducible. Each vector holds the request as it goes on the
wire (method, path still percent-encoded, query, headers, body) and botocore's canonical request.
"""
import datetime
import json
import pathlib
from unittest import mock
from urllib.parse import urlsplit

import botocore
from botocore.auth import SigV4Auth, SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

AKID = "AKIDEXAMPLE"
SECRET = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
TOKEN = "IQoJb3JpZ2luX2VjEXAMPLE/+=session/token=="
NOW = datetime.datetime(2024, 1, 1, 0, 0, 0)


def vector(name, method, url, headers, body, region, service, token=None, presign_expires=None):
    creds = Credentials(AKID, SECRET, token)
    req = AWSRequest(method=method, url=url, headers=dict(headers), data=body)
    if presign_expires is None:
        signer = SigV4Auth(creds, service, region)
    else:
        signer = SigV4QueryAuth(creds, service, region, expires=presign_expires)
    seen = []
    canonical_request = signer.canonical_request
    signer.canonical_request = lambda r: seen.append(canonical_request(r)) or seen[-1]
    with mock.patch("botocore.auth.get_current_datetime", return_value=NOW):
        signer.add_auth(req)
    (canonical,) = seen
    parts = urlsplit(req.url)
    body = req.body if isinstance(req.body, bytes) else (req.body or "").encode()
    return {
        "name": name,
        "form": "Header" if presign_expires is None else "Presigned",
        "method": method,
        "path": parts.path,
        "query": parts.query,
        "headers": [[k, v] for k, v in req.headers.items()],
        "body": body.decode(),
        "region": region,
        "service": service,
        "token": token,
        "now": int(NOW.replace(tzinfo=datetime.timezone.utc).timestamp()),
        "botocore_canonical_request": canonical,
    }


ECS_BODY = '{"cluster":"default","taskDefinition":"web:3","count":2,"startedBy":"ci \\u00e9t\\u00e9"}'
VECTORS = [
    vector(
        "ecs-json-1.1", "POST", "https://ecs.us-east-1.amazonaws.com/",
        {"Host": "ecs.us-east-1.amazonaws.com", "Content-Type": "application/x-amz-json-1.1",
         "X-Amz-Target": "AmazonEC2ContainerServiceV20141113.RunTask", "User-Agent": "aws-cli/2"},
        ECS_BODY.encode(), "us-east-1", "ecs"),
    vector(
        "sts-query-form", "POST", "https://sts.amazonaws.com/",
        {"Host": "sts.amazonaws.com", "Content-Type": "application/x-www-form-urlencoded; charset=utf-8"},
        b"Action=AssumeRole&Version=2011-06-15&RoleArn=arn%3Aaws%3Aiam%3A%3A123456789012%3Arole%2Fdemo"
        b"&RoleSessionName=a+b", "us-east-1", "sts"),
    vector(
        "monitoring-json-1.0", "POST", "https://monitoring.eu-west-1.amazonaws.com/",
        {"Host": "monitoring.eu-west-1.amazonaws.com", "Content-Type": "application/x-amz-json-1.0",
         "X-Amz-Target": "GraniteServiceVersion20100801.ListMetrics"},
        b'{"Namespace":"AWS/ECS"}', "eu-west-1", "monitoring"),
    vector(
        "sts-presigned-get-caller-identity", "GET",
        "https://sts.amazonaws.com/?Action=GetCallerIdentity&Version=2011-06-15",
        {"Host": "sts.amazonaws.com"}, b"", "us-east-1", "sts", presign_expires=900),
    vector(
        "sts-presigned-with-token", "GET",
        "https://sts.amazonaws.com/?Action=GetCallerIdentity&Version=2011-06-15",
        {"Host": "sts.amazonaws.com", "x-k8s-aws-id": "my-cluster"}, b"", "us-east-1", "sts",
        token=TOKEN, presign_expires=60),
    vector(
        "double-encoded-path", "GET", "https://example.us-east-1.amazonaws.com/a%20b/%2F/c~d?x=1%202&a=%2B",
        {"Host": "example.us-east-1.amazonaws.com"}, b"", "us-east-1", "execute-api"),
    vector(
        "ecs-with-session-token", "POST", "https://ecs.ap-southeast-2.amazonaws.com/",
        {"Host": "ecs.ap-southeast-2.amazonaws.com", "Content-Type": "application/x-amz-json-1.1",
         "X-Amz-Target": "AmazonEC2ContainerServiceV20141113.ListClusters",
         "X-Custom": "  a   b\tc  "},
        b"{}", "ap-southeast-2", "ecs", token=TOKEN),
]

out = pathlib.Path(__file__).resolve().parent.parent / "crates/gantry-sigv4/tests/it/botocore-vectors.json"
out.write_text(json.dumps({"botocore": botocore.__version__, "access_key": AKID, "secret": SECRET,
                           "vectors": VECTORS}, indent=2, ensure_ascii=False) + "\n")
print(f"wrote {len(VECTORS)} vectors to {out}")
