#!/usr/bin/env bash
# Fetches the official AWS protocol test cases that gantry-protocol's conformance test runs:
# botocore's sdist from PyPI (pinned), of which only tests/unit/protocols is extracted, to
# target/protocol-tests/botocore-VERSION/. Idempotent and quiet; prints the cases' directory.
# The cases are not committed: they are fetched at test time.
set -euo pipefail

version=1.44.8
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cache="$root/target/protocol-tests"
dir="$cache/botocore-$version/tests/unit/protocols"

if [[ ! -f "$dir/protocol-tests-ignore-list.json" ]]; then
    mkdir -p "$cache"
    sdist="$cache/botocore-$version.tar.gz"
    if [[ ! -f "$sdist" ]]; then
        # The project's venv (scripts/test.sh makes it) has pip even where the system Python does not.
        python=python3
        [[ -x "$root/.venv/bin/python" ]] && python="$root/.venv/bin/python"
        "$python" -m pip download --quiet --disable-pip-version-check --no-deps --no-binary :all: \
            --dest "$cache" "botocore==$version" >&2
    fi
    tar -xzf "$sdist" -C "$cache" "botocore-$version/tests/unit/protocols"
fi
echo "$dir"
