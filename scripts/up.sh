#!/usr/bin/env bash
# Start Gantry on this machine: build the release binary (once, then incrementally) and run
# `gantry up` with any arguments given (e.g. --listen 127.0.0.1:7360 --data-dir ./state).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
if ! command -v cargo >/dev/null 2>&1; then
    echo "scripts/up.sh: Rust's cargo is needed (https://rustup.rs)" >&2
    exit 1
fi
cargo build --release -q -p gantry
exec "$root/target/release/gantry" up "$@"
