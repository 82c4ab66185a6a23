#!/usr/bin/env bash
# Makes the images of the stack available to compose and the integration tests, and writes their
# names to $NL2SQL_OBS_TOOLS/../images.env (COLLECTOR_IMAGE=..., JAEGER_IMAGE=..., ...), which
# `make up` and tests/integration read.
#
# For each backend: the official image (tag from compose/.env) when it is present or `docker pull`
# succeeds; otherwise a local FROM-scratch image (images/NAME/Dockerfile) holding the static binary
# that scripts/build-tools.sh built from the official Go module, tagged nl2sql-obs/NAME:VERSION-local,
# where VERSION is the pinned tag's unless images/local-versions.txt lists a different one (with why).
# A local image is rebuilt only when its binary changed (label org.nl2sql-obs.binary-sha256).
# The healthcheck probe (PROBE_IMAGE) is ours: kept when present, else built FROM scratch from the
# host-built tools/probe (compose itself builds it from tools/probe/Dockerfile where a registry is).
# Grafana is neither pulled nor built here.
#
#   scripts/build-images.sh [collector] [jaeger] [prometheus] [alertmanager] [victorialogs] [probe]   (default: all)
#   NL2SQL_OBS_PULL=never   don't try the registry (always use/build local images)
#   NL2SQL_OBS_PULL=always  try the registry even when a local build exists (default: try, then build)
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "$0")/lib.sh"
TOOLS="$NL2SQL_OBS_TOOLS"
ENV_OUT="$IMAGES_ENV"
PULL="${NL2SQL_OBS_PULL:-auto}"
export DOCKER_BUILDKIT="${DOCKER_BUILDKIT:-0}" # the classic builder needs no buildx plugin and no registry

log() { printf 'build-images: %s\n' "$*" >&2; }
docker info >/dev/null 2>&1 || { log "no Docker engine (run scripts/ci-prerequisites.sh as root)"; exit 1; }

official() { # VAR -> the official image: OFFICIAL_<VAR> from the environment, else compose/.env
    local over="OFFICIAL_$1"
    local ref="${!over:-$(env_value "$1")}"
    [[ -n "$ref" ]] || { log "compose/.env has no $1"; return 1; }
    printf '%s' "$ref"
}

local_tag() { # VAR NAME -> nl2sql-obs/NAME:<version>-local (version: images/local-versions.txt, else the pinned tag)
    local var="$1" name="$2" version
    version="$(awk -v v="$var" '$1 == v { print $2 }' "$ROOT/images/local-versions.txt")"
    [[ -n "$version" ]] || { version="$(official "$var")"; version="${version##*:}"; }
    printf 'nl2sql-obs/%s:%s-local' "$name" "$version"
}

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

# Data directories: only where the official image has them (Prometheus' /prometheus and
# Alertmanager's /alertmanager, owned by nobody). The official collector and Jaeger images have no /var/lib/otelcol or /badger, so a named
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
    local args=(--build-arg "BINARY_SHA256=$sha")
    # build-tools.sh notes whether a binary carries its web UI (prometheus.web-ui: builtin or none)
    [[ ! -f "$TOOLS/$1.web-ui" ]] || args+=(--build-arg "WEB_UI=$(cat "$TOOLS/$1.web-ui")")
    if ! docker build -q "${args[@]}" -t "$tag" -f "$ROOT/images/$name/Dockerfile" "$ctx" >"$ctx.log" 2>&1; then
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
        printf '%s=%s\n' "$var" "$current" >>"$ENV_OUT.tmp"
        return 0
    fi
    if have_image "$official" || { [[ "$PULL" == always ]] || ! have_image "$tag"; } && try_official "$official"; then
        printf '%s=%s\n' "$var" "$official" >>"$ENV_OUT.tmp"
        return 0
    fi
    build_local "$name" "$tag" "$data" "$@"
    printf '%s=%s\n' "$var" "$tag" >>"$ENV_OUT.tmp"
}

probe_image() { # PROBE_IMAGE: ours, so never pulled; built FROM scratch around the host-built probe
    local tag
    tag="${PROBE_IMAGE:-$(env_value PROBE_IMAGE)}"
    if have_image "$tag" && [[ -z "$(docker image inspect -f '{{index .Config.Labels "org.nl2sql-obs.binary-sha256"}}' "$tag")" ]]; then
        log "$tag: present (built by compose from tools/probe/Dockerfile)"
    else
        build_local probe "$tag" "" probe
    fi
    printf 'PROBE_IMAGE=%s\n' "$tag" >>"$ENV_OUT.tmp"
}

mkdir -p "$(dirname "$ENV_OUT")"
{
    echo "# written by scripts/build-images.sh on $(date -u +%FT%TZ); source it or pass it to compose --env-file"
    echo "NL2SQL_OBS_TOOLS=$TOOLS"
} >"$ENV_OUT.tmp"
wanted=" ${*:-collector jaeger prometheus alertmanager victorialogs probe} "
[[ "$wanted" != *" collector "* ]] || choose COLLECTOR_IMAGE "$(official COLLECTOR_IMAGE)" collector "$(local_tag COLLECTOR_IMAGE otelcol)" "" otelcol-nl2sql
[[ "$wanted" != *" jaeger "* ]] || choose JAEGER_IMAGE "$(official JAEGER_IMAGE)" jaeger "$(local_tag JAEGER_IMAGE jaeger)" "" jaeger
[[ "$wanted" != *" prometheus "* ]] || choose PROMETHEUS_IMAGE "$(official PROMETHEUS_IMAGE)" prometheus "$(local_tag PROMETHEUS_IMAGE prometheus)" "prometheus" prometheus promtool
[[ "$wanted" != *" alertmanager "* ]] || choose ALERTMANAGER_IMAGE "$(official ALERTMANAGER_IMAGE)" alertmanager "$(local_tag ALERTMANAGER_IMAGE alertmanager)" "alertmanager" alertmanager amtool
[[ "$wanted" != *" victorialogs "* ]] || choose VICTORIALOGS_IMAGE "$(official VICTORIALOGS_IMAGE)" victorialogs "$(local_tag VICTORIALOGS_IMAGE victoria-logs)" "" victoria-logs
[[ "$wanted" != *" probe "* ]] || probe_image
mv -f "$ENV_OUT.tmp" "$ENV_OUT"
log "wrote $ENV_OUT:"
grep -v '^#' "$ENV_OUT" | sed 's/^/  /' >&2
