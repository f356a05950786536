"""Secrets Manager and SSM Parameter Store through the AWS CLI v1: the calls ECS users make, the
errors AWS gives, and values sealed at rest (the data directory holds no plaintext)."""

from __future__ import annotations

import json
import os
import stat
import subprocess



def cli_error(gantry, *args):
    rc, err = gantry.aws(*args)
    assert rc != 0, f"aws {' '.join(args)} succeeded"
    return err


def test_secret_lifecycle_versions_and_errors(gantry, unique):
    name = unique("db")
    c = gantry.aws_ok("secretsmanager", "create-secret", "--name", name,
                      "--secret-string", '{"user":"admin","password":"pw-1"}',
                      "--kms-key-id", "alias/mine", "--tags", "Key=team,Value=a")
    assert c["ARN"].startswith(f"arn:aws:secretsmanager:us-east-1:000000000000:secret:{name}-")
    assert len(c["ARN"].rsplit("-", 1)[1]) == 6
    v = gantry.aws_ok("secretsmanager", "get-secret-value", "--secret-id", c["ARN"])
    assert json.loads(v["SecretString"])["password"] == "pw-1"
    assert v["VersionStages"] == ["AWSCURRENT"]
    gantry.aws_ok("secretsmanager", "put-secret-value", "--secret-id", name, "--secret-string", "pw-2")
    assert gantry.aws_ok("secretsmanager", "get-secret-value", "--secret-id", name)["SecretString"] == "pw-2"
    prev = gantry.aws_ok("secretsmanager", "get-secret-value", "--secret-id", name,
                         "--version-stage", "AWSPREVIOUS")
    assert "pw-1" in prev["SecretString"]
    d = gantry.aws_ok("secretsmanager", "describe-secret", "--secret-id", name)
    assert d["KmsKeyId"] == "alias/mine" and d["Tags"] == [{"Key": "team", "Value": "a"}]
    assert sorted(sum(d["VersionIdsToStages"].values(), [])) == ["AWSCURRENT", "AWSPREVIOUS"]

    err = cli_error(gantry, "secretsmanager", "create-secret", "--name", name, "--secret-string", "x")
    assert "ResourceExistsException" in err and name in err
    err = cli_error(gantry, "secretsmanager", "get-secret-value", "--secret-id", unique("missing"))
    assert "(ResourceNotFoundException)" in err and "Secrets Manager can't find the specified secret." in err

    gantry.aws_ok("secretsmanager", "delete-secret", "--secret-id", name, "--recovery-window-in-days", "7")
    err = cli_error(gantry, "secretsmanager", "get-secret-value", "--secret-id", name)
    assert "InvalidRequestException" in err and "marked for deletion" in err
    gantry.aws_ok("secretsmanager", "restore-secret", "--secret-id", name)
    listed = gantry.aws_ok("secretsmanager", "list-secrets", "--filters", f"Key=name,Values={name}")
    assert [s["Name"] for s in listed["SecretList"]] == [name]
    gantry.aws_ok("secretsmanager", "delete-secret", "--secret-id", name, "--force-delete-without-recovery")
    err = cli_error(gantry, "secretsmanager", "describe-secret", "--secret-id", name)
    assert "ResourceNotFoundException" in err

    pw = gantry.aws_ok("secretsmanager", "get-random-password", "--password-length", "40",
                       "--exclude-punctuation")["RandomPassword"]
    assert len(pw) == 40 and pw.isalnum()
    err = cli_error(gantry, "secretsmanager", "rotate-secret", "--secret-id", name)
    assert "Lambda" in err


def test_parameters_through_the_cli(gantry, unique):
    base = "/" + unique("app")
    gantry.aws_ok("ssm", "put-parameter", "--name", f"{base}/url", "--value", "host-x", "--type", "String")
    gantry.aws_ok("ssm", "put-parameter", "--name", f"{base}/db/pass", "--value", "sEcReT-99",
                  "--type", "SecureString", "--key-id", "alias/k")
    enc = gantry.aws_ok("ssm", "get-parameter", "--name", f"{base}/db/pass")["Parameter"]
    assert enc["Value"] != "sEcReT-99" and enc["Type"] == "SecureString"
    dec = gantry.aws_ok("ssm", "get-parameter", "--name", f"{base}/db/pass", "--with-decryption")["Parameter"]
    assert dec["Value"] == "sEcReT-99"
    assert dec["ARN"] == f"arn:aws:ssm:us-east-1:000000000000:parameter{base}/db/pass"
    err = cli_error(gantry, "ssm", "put-parameter", "--name", f"{base}/url", "--value", "y", "--type", "String")
    assert "ParameterAlreadyExists" in err
    r = gantry.aws_ok("ssm", "put-parameter", "--name", f"{base}/url", "--value", "host-y", "--overwrite")
    assert r["Version"] == 2
    assert gantry.aws_ok("ssm", "get-parameter", "--name", f"{base}/url:1")["Parameter"]["Value"] == "host-x"
    one = gantry.aws_ok("ssm", "get-parameters-by-path", "--path", base)
    assert [p["Name"] for p in one["Parameters"]] == [f"{base}/url"]
    rec = gantry.aws_ok("ssm", "get-parameters-by-path", "--path", base, "--recursive", "--with-decryption")
    assert {p["Name"]: p["Value"] for p in rec["Parameters"]} == {f"{base}/url": "host-y",
                                                                  f"{base}/db/pass": "sEcReT-99"}
    hist = gantry.aws_ok("ssm", "get-parameter-history", "--name", f"{base}/url")
    assert [p["Version"] for p in hist["Parameters"]] == [1, 2]
    gantry.aws_ok("ssm", "label-parameter-version", "--name", f"{base}/url", "--parameter-version", "1",
                  "--labels", "old")
    assert gantry.aws_ok("ssm", "get-parameter", "--name", f"{base}/url:old")["Parameter"]["Version"] == 1
    desc = gantry.aws_ok("ssm", "describe-parameters", "--parameter-filters",
                         f"Key=Path,Option=Recursive,Values={base}", "Key=Type,Values=SecureString")
    assert [p["Name"] for p in desc["Parameters"]] == [f"{base}/db/pass"]
    assert desc["Parameters"][0]["KeyId"] == "alias/k"
    gantry.aws_ok("ssm", "add-tags-to-resource", "--resource-type", "Parameter", "--resource-id",
                  f"{base}/url", "--tags", "Key=env,Value=prod")
    tags = gantry.aws_ok("ssm", "list-tags-for-resource", "--resource-type", "Parameter",
                         "--resource-id", f"{base}/url")
    assert tags["TagList"] == [{"Key": "env", "Value": "prod"}]
    gantry.aws_ok("ssm", "delete-parameter", "--name", f"{base}/url")
    err = cli_error(gantry, "ssm", "get-parameter", "--name", f"{base}/url")
    assert "ParameterNotFound" in err


def test_no_secret_in_the_data_directory(spawn_server, unique):
    server = spawn_server("sealed")
    plain = "plaintext-canary-" + unique("v")
    server.aws_ok("secretsmanager", "create-secret", "--name", unique("s"), "--secret-string", plain)
    server.aws_ok("ssm", "put-parameter", "--name", "/" + unique("p"), "--value", plain, "--type", "SecureString")
    assert server.aws_ok("ssm", "describe-parameters")["Parameters"]
    key = server.data_dir / "master.key"
    assert stat.S_IMODE(os.stat(key).st_mode) == 0o600
    server.stop()  # SQLite's WAL checkpointed: every file as it rests
    grep = subprocess.run(["grep", "-r", "-a", "-l", plain, str(server.data_dir)], capture_output=True, text=True)
    assert grep.returncode == 1, f"plaintext found in {grep.stdout}"
    assert plain not in server.log_text()
    # The values are there, sealed: a restart with the same key opens them.
    server.start()
    names = server.aws_ok("secretsmanager", "list-secrets")["SecretList"]
    got = server.aws_ok("secretsmanager", "get-secret-value", "--secret-id", names[0]["ARN"])
    assert got["SecretString"] == plain


def test_master_key_from_the_environment(spawn_server, unique):
    import base64
    key = base64.b64encode(os.urandom(32)).decode()
    server = spawn_server("envkey", env={"GANTRY_MASTER_KEY": key})
    server.aws_ok("secretsmanager", "create-secret", "--name", unique("s"), "--secret-string", "v")
    assert not (server.data_dir / "master.key").exists()
