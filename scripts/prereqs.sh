#!/usr/bin/env bash
# Installs what the test suite needs on a Debian machine, when it is missing (as root): Python's
# venv module, a C compiler, protoc and etcd (the etcd backend), Docker (started if it is not
# running), a static busybox for the locally built test image, and a registry with htpasswd
# (private image pulls). Quick and silent when everything is there.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

need=()
python3 -m venv --help >/dev/null 2>&1 || need+=(python3-venv python3-pip)
command -v gcc >/dev/null 2>&1 || need+=(build-essential)
command -v curl >/dev/null 2>&1 || need+=(curl)
command -v dockerd >/dev/null 2>&1 || need+=(docker.io)
# The agent refreshes the host's neighbor entries of task addresses with `ip` (iproute2).
command -v ip >/dev/null 2>&1 || need+=(iproute2)
# The several-hosts tests (tests/blackbox/hosts.py): network namespaces entered with nsenter,
# each host's task-subnet routes and firewall rules (iptables).
command -v iptables >/dev/null 2>&1 || need+=(iptables)
command -v nsenter >/dev/null 2>&1 || need+=(util-linux)
# The etcd backend: protoc compiles its gRPC protos at build time; its tests run a real etcd.
command -v protoc >/dev/null 2>&1 || need+=(protobuf-compiler)
command -v etcd >/dev/null 2>&1 || need+=(etcd-server)
# Private image pulls are tested against a real registry with basic auth.
command -v docker-registry >/dev/null 2>&1 || need+=(docker-registry)
command -v htpasswd >/dev/null 2>&1 || need+=(apache2-utils)
{ [[ -x /bin/busybox ]] && file -L /bin/busybox 2>/dev/null | grep -q 'statically linked'; } || need+=(busybox-static file)
if ((${#need[@]})); then
    if [[ $EUID -ne 0 ]]; then
        echo "scripts/prereqs.sh: missing packages (${need[*]}); run as root or: sudo apt-get install -y ${need[*]}" >&2
        exit 1
    fi
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q >/dev/null
    apt-get install -y -q "${need[@]}" >/dev/null
fi
"$root/scripts/docker-up.sh"
# rustfmt and clippy: the suite checks formatting and lints (a minimal rustup profile lacks them).
if ! cargo fmt --version >/dev/null 2>&1 || ! cargo clippy --version >/dev/null 2>&1; then
    rustup component add rustfmt clippy >/dev/null
fi
