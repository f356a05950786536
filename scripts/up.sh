#!/usr/bin/env bash
# Start Gantry on this machine: make sure Docker runs, make sure the AWS CLI is there (in the
# project's virtualenv, .venv, when it is not on PATH), build the release binary (once, then
# incrementally) and run `gantry up` with any arguments given (e.g. --listen 127.0.0.1:7360
# --data-dir ./state). `gantry up` prints a command to try that works exactly as printed.
#
# GANTRY_VENV overrides the virtualenv (default: .venv, the one scripts/test.sh uses);
# GANTRY_BIN runs that gantry binary instead of building one.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

# Tasks run in Docker: install and start it where it is missing (as root).
"$root/scripts/docker-up.sh" || echo "scripts/up.sh: continuing without Docker: the API works, tasks cannot run" >&2

# The AWS CLI: the one on PATH, else the virtualenv's, installed there if missing (the version
# the test suite pins). `gantry up` is told where it is, so the command it prints runs it.
if ! command -v aws >/dev/null 2>&1; then
    venv="${GANTRY_VENV:-$root/.venv}"
    if [[ ! -x "$venv/bin/aws" ]]; then
        if ! python3 -m venv --help >/dev/null 2>&1; then
            if [[ $EUID -eq 0 ]] && command -v apt-get >/dev/null 2>&1; then
                echo "scripts/up.sh: installing Python's venv module" >&2
                export DEBIAN_FRONTEND=noninteractive
                apt-get update -q >/dev/null
                apt-get install -y -q python3-venv python3-pip >/dev/null
            else
                echo "scripts/up.sh: the AWS CLI is not installed, and Python's venv module is missing to install it; run: sudo apt-get install -y python3-venv (or install the AWS CLI)" >&2
            fi
        fi
        if python3 -m venv --help >/dev/null 2>&1; then
            awscli="$(grep -E '^awscli==' "$root/tests/blackbox/requirements.txt" || echo awscli)"
            echo "scripts/up.sh: installing the AWS CLI ($awscli) into $venv" >&2
            [[ -x "$venv/bin/python" ]] || python3 -m venv "$venv"
            "$venv/bin/python" -m pip install --disable-pip-version-check -q "$awscli" >&2
        fi
    fi
    if [[ -x "$venv/bin/aws" ]]; then
        export GANTRY_AWS_CLI="$venv/bin/aws"
        echo "scripts/up.sh: the AWS CLI is $venv/bin/aws (not on PATH; to put it there: export PATH=\"$venv/bin:\$PATH\")" >&2
    fi
fi

if [[ -n "${GANTRY_BIN:-}" ]]; then
    bin="$GANTRY_BIN"
else
    if ! command -v cargo >/dev/null 2>&1; then
        echo "scripts/up.sh: Rust's cargo is needed (https://rustup.rs)" >&2
        exit 1
    fi
    # The etcd backend's gRPC protos are compiled at build time: that needs protoc.
    if ! command -v protoc >/dev/null 2>&1; then
        if [[ $EUID -eq 0 ]] && command -v apt-get >/dev/null 2>&1; then
            export DEBIAN_FRONTEND=noninteractive
            apt-get update -q >/dev/null
            apt-get install -y -q protobuf-compiler >/dev/null
        else
            echo "scripts/up.sh: building Gantry needs protoc; run: sudo apt-get install -y protobuf-compiler" >&2
            exit 1
        fi
    fi
    cargo build --release -q -p gantry
    bin="${CARGO_TARGET_DIR:-$root/target}/release/gantry"
fi
exec "$bin" up "$@"
