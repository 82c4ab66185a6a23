#!/usr/bin/env bash
# Installs the system packages the tests need (Debian) and makes sure a Docker engine is running.
#
# What the rest of `make test` then relies on:
#   - Go >= 1.26.8 (GOTOOLCHAIN=local: no toolchain download), for scripts/build-tools.sh;
#   - a Docker engine (Debian's docker.io is enough; started here as root when none answers);
#   - the compose v2 plugin, which scripts/build-tools.sh builds from its Go module when missing.
set -euo pipefail
need_apt=()
command -v dockerd >/dev/null 2>&1 || need_apt+=(docker.io)
command -v docker >/dev/null 2>&1 || need_apt+=(docker.io)
python3 -c 'import venv, ensurepip' 2>/dev/null || need_apt+=(python3-venv)
command -v git >/dev/null 2>&1 || need_apt+=(git)
command -v shellcheck >/dev/null 2>&1 || need_apt+=(shellcheck)  # `make lint` checks scripts/
# `make unit` runs the unit suite once more a year ahead (nox session `future`, libfaketime)
[[ -e /usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1 ]] || need_apt+=(faketime)
command -v cc >/dev/null 2>&1 || need_apt+=(gcc)  # ... with a small shim it compiles (tests/faketime)
[[ -e /usr/include/pthread.h ]] || need_apt+=(libc6-dev)  # ... against glibc's headers
# Prometheus' web UI is built from its module's web/ui (scripts/build-tools.sh; Node >= 18 and npm)
command -v npm >/dev/null 2>&1 || need_apt+=(nodejs npm)
# the integration test of `make up` builds a stand-in Go image around a static shell
[[ -x /bin/busybox ]] || need_apt+=(busybox-static)
# the outcome tests start a throwaway PostgreSQL server (SQLSTATE classes through psycopg)
compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || need_apt+=(postgresql)
if ((${#need_apt[@]})); then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq "${need_apt[@]}"
fi

# Go: the backends and tools are built from their official Go modules.
if ! command -v go >/dev/null 2>&1; then
    echo "ci-prerequisites: Go is not installed; the backends are built with Go >= 1.26.8 (see README)" >&2
    exit 1
fi
gover="$(go env GOVERSION | sed 's/^go//')"
if [[ "$(printf '%s\n%s\n' 1.26.8 "$gover" | sort -V | head -1)" != 1.26.8 ]]; then
    echo "ci-prerequisites: Go $gover is too old: the compose v2 module needs Go >= 1.26.8" >&2
    exit 1
fi

# Python: `make unit` runs the unit tests on every version requires-python allows (noxfile.py finds
# them on PATH or under pyenv's versions); a missing one is an error in CI, so say which here.
for v in 3.10 3.11 3.12 3.13; do
    if ! command -v "python$v" >/dev/null 2>&1 && ! compgen -G "${PYENV_ROOT:-$HOME/.pyenv}/versions/$v.*/bin/python$v" >/dev/null; then
        echo "ci-prerequisites: Python $v is missing: the unit tests run on 3.10-3.13 (install it, e.g. with pyenv)" >&2
        exit 1
    fi
done

if ! docker info >/dev/null 2>&1; then
    if [[ "$(id -u)" != 0 ]]; then
        echo "ci-prerequisites: no Docker engine answers and this is not root: start dockerd, or add yourself to the docker group" >&2
        exit 1
    fi
    # An engine that is still shutting down gets up to 30 s to finish.
    for _ in $(seq 1 30); do pgrep -x dockerd >/dev/null || break; sleep 1; done
    if pgrep -x dockerd >/dev/null; then
        echo "ci-prerequisites: a dockerd process runs but does not answer; stop it and run again" >&2
        exit 1
    fi
    # No dockerd runs, so a pid file is stale (an engine that was killed) and would stop the new one.
    rm -f /var/run/docker.pid
    echo "starting dockerd (log: /tmp/nl2sql-obs-dockerd.log)"
    nohup dockerd >/tmp/nl2sql-obs-dockerd.log 2>&1 &
    for _ in $(seq 1 60); do
        docker info >/dev/null 2>&1 && break
        pgrep -x dockerd >/dev/null || break  # it died: no point in waiting
        sleep 1
    done
    docker info >/dev/null 2>&1 || { echo "dockerd did not start; see /tmp/nl2sql-obs-dockerd.log" >&2; tail -20 /tmp/nl2sql-obs-dockerd.log >&2; exit 1; }
fi
echo "ci-prerequisites: Go $gover, Docker engine $(docker version --format '{{.Server.Version}}' 2>/dev/null || echo '?')"
