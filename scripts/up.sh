#!/usr/bin/env bash
# Start Gantry on this machine: make sure Docker runs, build the release binary (once, then
# incrementally) and run `gantry up` with any arguments given (e.g. --listen 127.0.0.1:7360
# --data-dir ./state).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
if ! command -v cargo >/dev/null 2>&1; then
    echo "scripts/up.sh: Rust's cargo is needed (https://rustup.rs)" >&2
    exit 1
fi
# Tasks run in Docker: install and start it where it is missing (as root).
"$root/scripts/docker-up.sh" || echo "scripts/up.sh: continuing without Docker: the API works, tasks cannot run" >&2
cargo build --release -q -p gantry
exec "$root/target/release/gantry" up "$@"
