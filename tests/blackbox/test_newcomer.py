"""A newcomer's first five minutes: `scripts/up.sh` on a machine whose PATH has no AWS CLI, the
command `gantry up` prints run exactly as printed, and the AWS CLI profile `gantry` it writes
(`aws --profile gantry ecs list-clusters` with nothing exported), leaving every other profile
and comment of the user's files as they were.

Each test has its own HOME (or AWS_CONFIG_FILE/AWS_SHARED_CREDENTIALS_FILE) under tmp_path.
"""

from __future__ import annotations

import configparser
import os
import shlex
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from harness import REPO, free_port, gantry_bin, remove_ready_holders, wait_for

UP_SH = REPO / "scripts" / "up.sh"

USER_CONFIG = """\
# my own settings, kept as they are
[default]
region = eu-west-1
output = text

[profile work]
region = ap-south-1
"""

USER_CREDENTIALS = """\
[default]
aws_access_key_id = AKIAUSERKEY
aws_secret_access_key = user-secret
"""


def path_without_aws() -> str:
    """This PATH without any directory that holds an `aws`, with the sbin directories
    (dockerd) that a login shell of root has."""
    dirs = [d for d in os.environ.get("PATH", "").split(os.pathsep)
            if d and not (Path(d) / "aws").exists()]
    for d in ("/usr/local/sbin", "/usr/sbin", "/sbin"):
        if d not in dirs:
            dirs.append(d)
    return os.pathsep.join(dirs)


def clean_env(home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("AWS_") and not k.startswith("GANTRY_")}
    env.update({"HOME": str(home), "PATH": path_without_aws(), "AWS_EC2_METADATA_DISABLED": "true"})
    env.update(extra)
    return env


class Up:
    """`scripts/up.sh` or `gantry up`, started with stdout and stderr in files."""

    def __init__(self, args: list[str], env: dict[str, str], out: Path):
        self.args = args
        self.out, self.err = out.with_suffix(".out"), out.with_suffix(".err")
        with open(self.out, "wb") as o, open(self.err, "wb") as e:
            self.proc = subprocess.Popen(args, env=env, stdout=o, stderr=e, stdin=subprocess.DEVNULL,
                                         cwd=REPO)

    def printed(self) -> str:
        return self.out.read_text(errors="replace")

    def try_it(self, timeout: float = 120) -> str:
        """The command printed under "Try it:"."""
        def ready():
            if self.proc.poll() is not None:
                raise AssertionError(f"exited with {self.proc.returncode}:\n{self.printed()}\n"
                                     f"{self.err.read_text(errors='replace')[-3000:]}")
            lines = self.printed().splitlines()
            if "Try it:" in lines and lines.index("Try it:") + 1 < len(lines):
                return lines[lines.index("Try it:") + 1].strip()
            return None
        return wait_for(ready, timeout, interval=0.1, what="gantry up's 'Try it:' command")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=30)
        # The ready namespace holders a killed `gantry up` leaves (its --data-dir's).
        if "--data-dir" in self.args:
            remove_ready_holders(Path(self.args[self.args.index("--data-dir") + 1]))


@pytest.fixture
def ups():
    started: list[Up] = []
    yield started
    for u in started:
        u.stop()


def venv_with_aws() -> Path:
    """The virtualenv this suite runs in, which has the AWS CLI (scripts/test.sh makes it)."""
    venv = Path(sys.executable).parent.parent
    if not (venv / "bin" / "aws").exists():
        pytest.fail(f"the suite's Python ({sys.executable}) is not in a virtualenv with the AWS CLI",
                    pytrace=False)
    return venv


def test_up_sh_prints_a_command_that_works_as_printed_without_aws_on_path(tmp_path, ups):
    home = tmp_path / "home"
    (home / ".aws").mkdir(parents=True)
    (home / ".aws" / "config").write_text(USER_CONFIG)
    (home / ".aws" / "credentials").write_text(USER_CREDENTIALS)
    (home / ".aws" / "credentials").chmod(0o600)
    venv = venv_with_aws()
    env = clean_env(home, GANTRY_BIN=str(gantry_bin()), GANTRY_VENV=str(venv))
    assert subprocess.run(["bash", "-c", "command -v aws"], env=env).returncode != 0, \
        "the test's PATH must not have an aws"
    port = free_port()
    up = Up([str(UP_SH), "--listen", f"127.0.0.1:{port}", "--data-dir", str(tmp_path / "data")],
            env, tmp_path / "up")
    ups.append(up)
    command = up.try_it()

    # The AWS CLI was found in the virtualenv, and up.sh said where and how to put it on PATH.
    aws = venv / "bin" / "aws"
    notes = up.err.read_text(errors="replace")
    assert f"the AWS CLI is {aws}" in notes, notes
    assert f'export PATH="{venv}/bin:$PATH"' in notes, notes
    # The printed command names it by its full path, and uses the profile gantry up wrote.
    assert shlex.split(command) == [str(aws), "--profile", "gantry", "ecs", "create-cluster",
                                    "--cluster-name", "demo"], command
    printed = up.printed()
    assert "AWS CLI profile 'gantry' written to" in printed, printed
    assert "not installed" not in printed, printed

    # Exactly as printed, in a shell with this PATH and nothing exported.
    p = subprocess.run(["bash", "-c", command], env=env, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert '"clusterName": "demo"' in p.stdout, p.stdout

    p = subprocess.run([str(aws), "--profile", "gantry", "ecs", "list-clusters", "--output", "text"],
                       env=env, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert "arn:aws:ecs:us-east-1:000000000000:cluster/demo" in p.stdout, p.stdout

    # The user's profiles and comments are as they were; the profile was added after them.
    config = (home / ".aws" / "config").read_text()
    credentials = (home / ".aws" / "credentials").read_text()
    assert config.startswith(USER_CONFIG), config
    assert config[len(USER_CONFIG):] == (
        f"\n[profile gantry]\nendpoint_url = http://127.0.0.1:{port}\nregion = us-east-1\n"), config
    assert credentials.startswith(USER_CREDENTIALS), credentials
    assert credentials[len(USER_CREDENTIALS):] == (
        "\n[gantry]\naws_access_key_id = test\naws_secret_access_key = test\n"), credentials
    assert (home / ".aws" / "credentials").stat().st_mode & 0o777 == 0o600


def test_gantry_up_with_sigv4_writes_the_root_key_into_the_profile(tmp_path, ups):
    home = tmp_path / "home"
    home.mkdir()
    files = tmp_path / "elsewhere"
    # AWS_CONFIG_FILE and AWS_SHARED_CREDENTIALS_FILE are respected; the files need not exist.
    config, credentials = files / "config", files / "credentials"
    env = clean_env(home, AWS_CONFIG_FILE=str(config), AWS_SHARED_CREDENTIALS_FILE=str(credentials))
    # An earlier gantry profile: its own keys are replaced, a stale session token dropped, any
    # other setting of it kept.
    files.mkdir()
    config.write_text("[profile gantry]\n# mine\ncli_pager =\nendpoint_url = http://old:1\n")
    credentials.write_text(USER_CREDENTIALS + "\n[gantry]\naws_access_key_id = OLD\n"
                           "aws_session_token = stale\n")
    port = free_port()
    data = tmp_path / "data"
    up = Up([str(gantry_bin()), "up", "--auth", "sigv4", "--listen", f"127.0.0.1:{port}",
             "--data-dir", str(data)], env, tmp_path / "up")
    ups.append(up)
    up.try_it()
    assert not (home / ".aws").exists(), "the default files were written despite AWS_CONFIG_FILE"

    root = configparser.ConfigParser()
    root.read(data / "root-credentials")
    key_id = root["default"]["aws_access_key_id"]
    assert key_id.startswith("AKIA")
    assert config.read_text() == (
        f"[profile gantry]\n# mine\ncli_pager =\nendpoint_url = http://127.0.0.1:{port}\n"
        "region = us-east-1\n")
    assert credentials.read_text() == (
        USER_CREDENTIALS + f"\n[gantry]\naws_access_key_id = {key_id}\n"
        f"aws_secret_access_key = {root['default']['aws_secret_access_key']}\n")

    aws = str(venv_with_aws() / "bin" / "aws")
    p = subprocess.run([aws, "--profile", "gantry", "sts", "get-caller-identity", "--output", "text"],
                       env=env, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert "arn:aws:iam::000000000000:root" in p.stdout, p.stdout
    p = subprocess.run([aws, "--profile", "gantry", "ecs", "list-clusters"], env=env,
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    # The user's default profile is untouched: its key is not Gantry's, so sigv4 refuses it.
    p = subprocess.run([aws, "--endpoint-url", f"http://127.0.0.1:{port}", "--region", "us-east-1",
                        "ecs", "list-clusters"], env=env, capture_output=True, text=True, timeout=120)
    assert p.returncode != 0 and "UnrecognizedClientException" in p.stderr, p.stderr


def test_gantry_up_says_how_to_get_the_aws_cli_when_there_is_none(tmp_path, ups):
    home = tmp_path / "home"
    home.mkdir()
    env = clean_env(home)
    up = Up([str(gantry_bin()), "up", "--listen", f"127.0.0.1:{free_port()}", "--data-dir",
             str(tmp_path / "data")], env, tmp_path / "up")
    ups.append(up)
    assert up.try_it() == "aws --profile gantry ecs create-cluster --cluster-name demo"
    assert "the AWS CLI is not installed here: ./scripts/up.sh installs it" in up.printed()
