#!/usr/bin/env bash
# Installs the system packages the tests need (Debian) and makes sure a Docker engine is running.
set -euo pipefail
need_apt=()
command -v dockerd >/dev/null 2>&1 || need_apt+=(docker.io)
python3 -c 'import venv, ensurepip' 2>/dev/null || need_apt+=(python3-venv)
if ((${#need_apt[@]})); then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq "${need_apt[@]}"
fi
if ! docker info >/dev/null 2>&1; then
    echo "starting dockerd (log: /tmp/nl2sql-obs-dockerd.log)"
    nohup dockerd >/tmp/nl2sql-obs-dockerd.log 2>&1 &
    for _ in $(seq 1 60); do docker info >/dev/null 2>&1 && break; sleep 1; done
    docker info >/dev/null 2>&1 || { echo "dockerd did not start; see /tmp/nl2sql-obs-dockerd.log" >&2; tail -20 /tmp/nl2sql-obs-dockerd.log >&2; exit 1; }
fi
