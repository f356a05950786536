#!/usr/bin/env bash
# Makes sure a Docker engine is installed and running on this (Debian) machine: installs
# docker.io if the engine (dockerd) is missing, and starts dockerd in the background (there may be no
# systemd) if the daemon does not answer. Needs root for either step; does nothing when Docker
# already works. (A docker CLI alone is not an engine: dockerd is what must be there.)
set -euo pipefail

if ! command -v dockerd >/dev/null 2>&1; then
    if [[ $EUID -ne 0 ]]; then
        echo "docker-up: Docker is not installed; run as root, or: sudo apt-get install -y docker.io" >&2
        exit 1
    fi
    echo "docker-up: installing docker.io" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q >/dev/null
    apt-get install -y -q docker.io >/dev/null
fi

if ! docker info >/dev/null 2>&1; then
    if [[ $EUID -ne 0 ]]; then
        echo "docker-up: the Docker daemon is not running; start it (sudo dockerd &) or add yourself to the docker group" >&2
        exit 1
    fi
    echo "docker-up: starting dockerd (log: /var/log/gantry-dockerd.log)" >&2
    nohup dockerd >/var/log/gantry-dockerd.log 2>&1 &
    for _ in $(seq 1 150); do
        docker info >/dev/null 2>&1 && exit 0
        sleep 0.2
    done
    echo "docker-up: dockerd did not come up; see /var/log/gantry-dockerd.log" >&2
    exit 1
fi
