#!/usr/bin/env bash
# The whole test suite, from a fresh Debian machine with Rust:
#   formatting and clippy, Rust unit/integration tests, then the black-box suite (real binary + AWS CLI v1 + boto3).
# Quiet on success; on failure the failing step's output is shown.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

venv="$root/.venv"
requirements="$root/tests/blackbox/requirements.txt"
log="$(mktemp -d)"
trap 'rm -rf "$log"' EXIT

# Run a step quietly; print its output only if it fails.
quiet() {
    local name="$1"; shift
    if ! "$@" >"$log/$name.out" 2>&1; then
        echo "scripts/test.sh: '$*' failed:" >&2
        cat "$log/$name.out" >&2
        exit 1
    fi
}

# 0. System prerequisites (Python venv, Docker running, a static busybox), installed if missing.
quiet prereqs "$root/scripts/prereqs.sh"

# 1. Python venv with the AWS CLI v1, boto3 and pytest (re-installed when requirements change).
if [[ ! -x "$venv/bin/python" ]]; then
    quiet venv python3 -m venv "$venv"
fi
stamp="$venv/.requirements.sha256"
want="$(sha256sum "$requirements" | cut -d' ' -f1)"
if [[ ! -f "$stamp" || "$(cat "$stamp")" != "$want" ]]; then
    quiet pip "$venv/bin/python" -m pip install --disable-pip-version-check -q -r "$requirements"
    echo "$want" >"$stamp"
fi

# 2. Code hygiene: unformatted code, a broken architectural invariant (the tidy test, which builds
# in seconds) or a clippy warning fails the suite.
quiet fmt cargo fmt --all --check
quiet tidy cargo test -q -p gantry-tidy
quiet module-cycles python3 "$root/tools/module-cycles.py"
quiet clippy cargo clippy -q --workspace --all-targets -- -D warnings

# 3. Build the binary the black-box tests start, and the local image the real-Docker tests run.
quiet build cargo build -q -p gantry
quiet images "$root/tests/images/build.sh"

# The AWS protocol test cases gantry-protocol's conformance test runs (fetched, not committed).
quiet protocol-tests "$root/scripts/protocol-tests.sh"

# 4. Rust tests. A failure here is reported, and the black-box suite still runs.
status=0
if cargo nextest --version >/dev/null 2>&1; then
    rust=(cargo nextest run --workspace --no-fail-fast --status-level fail
          --final-status-level fail --hide-progress-bar)
else
    rust=(cargo test -q --workspace --no-fail-fast)
fi
if "${rust[@]}" >"$log/rust-tests.out" 2>&1; then
    # One closing line: nextest's summary, or cargo test's totals.
    if [[ "${rust[1]}" == nextest ]]; then
        tail -n 1 "$log/rust-tests.out"
    else
        awk '/^test result:/ { p += $4; f += $6 } END { printf "%d passed, %d failed\n", p, f }' \
            "$log/rust-tests.out"
    fi
    # The official protocol test cases' count (gantry-protocol's conformance test, run again
    # alone to show its summary: a tenth of a second).
    cargo test -q -p gantry-protocol --test it -- --nocapture conformance::botocore_protocol_test_cases 2>&1 \
        | grep '^protocol conformance:' || true
else
    echo "scripts/test.sh: '${rust[*]}' failed:" >&2
    cat "$log/rust-tests.out" >&2
    status=1
fi

# 5. Black-box tests against the debug gantry in CARGO_TARGET_DIR (default target/), with the venv's `aws` first on PATH.
# Three pytest-xdist workers, a file per worker at a time (`--dist loadfile`): each worker has
# its own session server, Docker cluster and label, and most tests wait rather than compute.
# GANTRY_TEST_WORKERS=0 runs them in this process, one after another.
export PATH="$venv/bin:$PATH"
export GANTRY_BIN="${GANTRY_BIN:-${CARGO_TARGET_DIR:-$root/target}/debug/gantry}"
export GANTRY_REQUIRE_DOCKER=1
"$venv/bin/pytest" -q -p no:cacheprovider --timeout 900 -n "${GANTRY_TEST_WORKERS:-3}" \
    --dist loadfile tests/blackbox "$@" || status=$?
exit "$status"
