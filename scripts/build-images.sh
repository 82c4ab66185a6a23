#!/usr/bin/env bash
# Makes the collector, Jaeger and Prometheus images available to compose and the integration tests,
# and writes their names to $NL2SQL_OBS_TOOLS/../images.env (COLLECTOR_IMAGE=..., JAEGER_IMAGE=...,
# PROMETHEUS_IMAGE=...), which `make up` and tests/integration source.
#
# For each backend: the official image when it is present or `docker pull` succeeds; otherwise a
# local FROM-scratch image (images/NAME/Dockerfile) holding the static binary that
# scripts/build-tools.sh built from the official Go module, tagged nl2sql-obs/NAME:VERSION-local.
# A local image is rebuilt only when its binary changed (label org.nl2sql-obs.binary-sha256).
# Grafana is neither pulled nor built here.
#
#   scripts/build-images.sh [collector] [jaeger] [prometheus]   (default: all three)
#   NL2SQL_OBS_PULL=never   don't try the registry (always use/build local images)
#   NL2SQL_OBS_PULL=always  try the registry even when a local build exists (default: try, then build)
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
TOOLS="${NL2SQL_OBS_TOOLS:-$HOME/.cache/nl2sql-obs/bin}"
CACHE="$(dirname "$TOOLS")"
ENV_FILE="${NL2SQL_OBS_IMAGES_ENV:-$CACHE/images.env}"
PULL="${NL2SQL_OBS_PULL:-auto}"
export DOCKER_BUILDKIT="${DOCKER_BUILDKIT:-0}" # the classic builder needs no buildx plugin and no registry

log() { printf 'build-images: %s\n' "$*" >&2; }
docker info >/dev/null 2>&1 || { log "no Docker engine (run scripts/ci-prerequisites.sh as root)"; exit 1; }

# official image references (DESIGN.md "Versions"); overridable like compose's variables
OFFICIAL_COLLECTOR="${OFFICIAL_COLLECTOR_IMAGE:-otel/opentelemetry-collector-contrib:0.159.0}"
OFFICIAL_JAEGER="${OFFICIAL_JAEGER_IMAGE:-jaegertracing/jaeger:2.20.0}"
OFFICIAL_PROMETHEUS="${OFFICIAL_PROMETHEUS_IMAGE:-prom/prometheus:v3.14.0}"

have_image() { docker image inspect "$1" >/dev/null 2>&1; }

try_official() { # IMAGE -> 0 when it is (now) present locally
    local img="$1"
    have_image "$img" && return 0
    [[ "$PULL" == never ]] && return 1
    if timeout 120 docker pull -q "$img" >/dev/null 2>&1; then
        log "pulled $img"
        return 0
    fi
    log "cannot pull $img (no registry?): using a local build"
    return 1
}

# Data directories: only where the official image has them (Prometheus' /prometheus, owned by
# nobody). The official collector and Jaeger images have no /var/lib/otelcol or /badger, so a named
# volume mounted there starts root-owned; ours must behave the same (compose relies on it).

# rootfs shared by the three images: passwd/group for the UIDs, CA certificates, /tmp
make_rootfs() { # DIR
    local d="$1"
    mkdir -p "$d/rootfs/etc/ssl/certs" "$d/rootfs/tmp"
    chmod 1777 "$d/rootfs/tmp"
    cat >"$d/rootfs/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/sbin/nologin
otel:x:10001:10001:otel:/:/sbin/nologin
nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin
EOF
    cat >"$d/rootfs/etc/group" <<'EOF'
root:x:0:
otel:x:10001:
nogroup:x:65534:
EOF
    local ca
    for ca in /etc/ssl/certs/ca-certificates.crt /etc/pki/tls/certs/ca-bundle.crt; do
        [[ -f "$ca" ]] && { cp "$ca" "$d/rootfs/etc/ssl/certs/ca-certificates.crt"; break; }
    done
}

build_local() { # NAME TAG DATA_DIRS BINARIES...
    local name="$1" tag="$2" data="$3"; shift 3
    local b sha ctx
    for b in "$@"; do
        [[ -x "$TOOLS/$b" ]] || { log "missing $TOOLS/$b: run scripts/build-tools.sh first"; return 1; }
    done
    sha="$( { cat "$ROOT/images/$name/Dockerfile"; for b in "$@"; do cat "$TOOLS/$b"; done; } | sha256sum | cut -c1-64)"
    if have_image "$tag" && [[ "$(docker image inspect -f '{{index .Config.Labels "org.nl2sql-obs.binary-sha256"}}' "$tag")" == "$sha" ]]; then
        log "$tag: up to date"
        return 0
    fi
    ctx="$(mktemp -d)"
    make_rootfs "$ctx"
    mkdir -p "$ctx/bin" "$ctx/data"
    for b in "$@"; do ln "$TOOLS/$b" "$ctx/bin/$b" 2>/dev/null || cp "$TOOLS/$b" "$ctx/bin/$b"; done
    local dd; for dd in $data; do mkdir -p "$ctx/data/$dd"; done
    local t0=$SECONDS
    if ! docker build -q --build-arg "BINARY_SHA256=$sha" -t "$tag" -f "$ROOT/images/$name/Dockerfile" "$ctx" >"$ctx.log" 2>&1; then
        cat "$ctx.log" >&2; rm -rf "$ctx" "$ctx.log"; return 1
    fi
    rm -rf "$ctx" "$ctx.log"
    log "$tag: built in $((SECONDS - t0))s"
}

choose() { # VAR OFFICIAL NAME LOCAL_TAG DATA_DIRS BINARIES...
    local var="$1" official="$2" name="$3" tag="$4" data="$5"; shift 5
    local current="${!var:-}"
    if [[ -n "$current" ]]; then
        log "$var=$current (from the environment)"
        printf '%s=%s\n' "$var" "$current" >>"$ENV_FILE.tmp"
        return 0
    fi
    if have_image "$official" || { [[ "$PULL" == always ]] || ! have_image "$tag"; } && try_official "$official"; then
        printf '%s=%s\n' "$var" "$official" >>"$ENV_FILE.tmp"
        return 0
    fi
    build_local "$name" "$tag" "$data" "$@"
    printf '%s=%s\n' "$var" "$tag" >>"$ENV_FILE.tmp"
}

mkdir -p "$(dirname "$ENV_FILE")"
{
    echo "# written by scripts/build-images.sh on $(date -u +%FT%TZ); source it or pass it to compose --env-file"
    echo "NL2SQL_OBS_TOOLS=$TOOLS"
} >"$ENV_FILE.tmp"
wanted=" ${*:-collector jaeger prometheus} "
[[ "$wanted" != *" collector "* ]] || choose COLLECTOR_IMAGE "$OFFICIAL_COLLECTOR" collector nl2sql-obs/otelcol:0.159.0-local "" otelcol-nl2sql
[[ "$wanted" != *" jaeger "* ]] || choose JAEGER_IMAGE "$OFFICIAL_JAEGER" jaeger nl2sql-obs/jaeger:2.13.0-local "" jaeger
[[ "$wanted" != *" prometheus "* ]] || choose PROMETHEUS_IMAGE "$OFFICIAL_PROMETHEUS" prometheus nl2sql-obs/prometheus:v3.14.0-local "prometheus" prometheus promtool
mv -f "$ENV_FILE.tmp" "$ENV_FILE"
log "wrote $ENV_FILE:"
grep -v '^#' "$ENV_FILE" | sed 's/^/  /' >&2
