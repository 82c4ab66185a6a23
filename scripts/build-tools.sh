#!/usr/bin/env bash
# Builds the real backends and tools from their official Go modules into $NL2SQL_OBS_TOOLS
# (default ~/.cache/nl2sql-obs/bin), as static binaries (CGO_ENABLED=0) that run FROM scratch.
#
#   scripts/build-tools.sh            # every tool
#   scripts/build-tools.sh probe jaeger
#
# Tools: probe, docker-compose, builder, otelcol-nl2sql, jaeger, prometheus (+ promtool), victorialogs,
# telemetrygen, helm (checks deploy/helm: lint and template; it never talks to a cluster), sloth,
# alertmanager (+ amtool).
# Each tool is skipped when it was already built from the same inputs: the stamp is a hash of its
# wrapper module (tools/NAME/go.mod + go.sum, or collector/manifest.yaml) and the Go version.
# GOMODCACHE and GOCACHE are Go's defaults, so a second run on the same machine is warm.
# Cold build times are appended to $NL2SQL_OBS_TOOLS/../build-times.log.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
TOOLS="${NL2SQL_OBS_TOOLS:-$HOME/.cache/nl2sql-obs/bin}"
CACHE="$(dirname "$TOOLS")"
STAMPS="$TOOLS/.stamps"
mkdir -p "$TOOLS" "$STAMPS"
export CGO_ENABLED=0 GOFLAGS="${GOFLAGS:--trimpath}" GOTOOLCHAIN="${GOTOOLCHAIN:-local}"
PAR="${NL2SQL_OBS_GO_PAR:-2}"

command -v go >/dev/null || { echo "build-tools: Go is required (https://go.dev/dl/ or apt-get install golang)" >&2; exit 1; }
GOVER="$(go env GOVERSION)"

log() { printf 'build-tools: %s\n' "$*" >&2; }

# stamp NAME FILE... -> the hash of the inputs, the Go version and this script's build recipe
stamp_of() {
    local name="$1"; shift
    { echo "$name $GOVER $GOFLAGS $CGO_ENABLED"; cat "$@"; sed -n "/^build_${name//-/_}()/,/^}/p" "$0"; } | sha256sum | cut -c1-32
}
up_to_date() { # NAME STAMP BINARY...
    local name="$1" st="$2"; shift 2
    [[ -f "$STAMPS/$name" && "$(cat "$STAMPS/$name")" == "$st" ]] || return 1
    local b; for b in "$@"; do [[ -x "$TOOLS/$b" ]] || return 1; done
}
timed() { # NAME CMD... : runs CMD, records the wall time
    local name="$1"; shift
    local t0=$SECONDS
    "$@"
    local dt=$((SECONDS - t0))
    log "$name built in ${dt}s"
    echo "$(date -u +%FT%TZ) $name ${dt}s go=$GOVER par=$PAR" >>"$CACHE/build-times.log"
}

gobuild() { # MODULE_DIR (under tools/, or absolute) OUT PKG [extra go build args...]
    local dir="$1" out="$2" pkg="$3"; shift 3
    [[ "$dir" == /* ]] || dir="$ROOT/tools/$dir"
    (cd "$dir" && go build -p "$PAR" -mod=readonly "$@" -o "$TOOLS/$out.tmp" "$pkg")
    mv -f "$TOOLS/$out.tmp" "$TOOLS/$out"
}

build_probe() {
    gobuild probe probe . -ldflags "-s -w"
}

build_docker_compose() {
    gobuild compose docker-compose github.com/docker/compose/v5/cmd \
        -ldflags "-s -w -X github.com/docker/compose/v5/internal.Version=v5.6.0"
}

build_builder() {
    gobuild builder builder go.opentelemetry.io/collector/cmd/builder -ldflags "-s -w"
}

build_jaeger() {
    # github.com/jaegertracing/jaeger@v1.76.0 is the commit of Jaeger v2.13.0 (tagged v1.76.0 / v2.13.0);
    # the v2.x tags cannot be used by the go command, and later commits are not served by the module proxy.
    local v=github.com/jaegertracing/jaeger/internal/version
    gobuild jaeger jaeger github.com/jaegertracing/jaeger/cmd/jaeger \
        -ldflags "-s -w -X $v.latestVersion=v2.13.0 -X $v.commitSHA=v1.76.0 -X $v.date=2025-12-03T00:00:00Z"
}

# pnpm for Prometheus' web UI (web/ui is a pnpm workspace; pnpm 10 is the newest line that runs on
# Debian's Node 20), installed from the npm registry into the build directory.
PNPM_VERSION=10.34.9

build_prometheus() {
    # remove_all_sd: no service discovery plugins (the stack uses static_configs only).
    local v=github.com/prometheus/common/version
    local ld="-s -w -X $v.Version=3.14.0 -X $v.Revision=v0.314.0 -X $v.Branch=v0.314.0 -X $v.BuildUser=nl2sql-obs"
    # The web UI: the module ships its source (web/ui), not the built assets. Build them with Node in a
    # writable copy of the module, compress them as Prometheus' release does, and compile that copy
    # (through a copy of the wrapper module that replaces the module with it) with -tags builtinassets.
    # Without npm, or when that build fails, Prometheus is built without its UI (/api/v1 works), and
    # $TOOLS/prometheus.web-ui says which one was built (the image's org.nl2sql-obs.web-ui label).
    local work="$CACHE/build/prometheus-ui" mod="" ui=none dir=prometheus tags=remove_all_sd
    rm -rf "$work" && mkdir -p "$work/wrapper"
    if ! command -v npm >/dev/null; then
        log "prometheus: no npm (Debian: apt-get install nodejs npm): building without the web UI"
    elif mod="$(cd "$ROOT/tools/prometheus" && go mod download -json github.com/prometheus/prometheus \
            | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')" && [[ -d "$mod/web/ui" ]] \
        && cp -r "$mod" "$work/prometheus" && chmod -R u+w "$work/prometheus" \
        && npm install --no-audit --no-fund --prefix "$work/pnpm" "pnpm@$PNPM_VERSION" >"$work/ui.log" 2>&1 \
        && (cd "$work/prometheus/web/ui" && export PATH="$work/pnpm/node_modules/.bin:$PATH" CI="" \
            && pnpm install --frozen-lockfile && bash build_ui.sh --mantine-ui) >>"$work/ui.log" 2>&1 \
        && (cd "$work/prometheus" && bash scripts/compress_assets.sh) >>"$work/ui.log" 2>&1 \
        && cp "$ROOT/tools/prometheus/go.mod" "$ROOT/tools/prometheus/go.sum" "$work/wrapper/" \
        && (cd "$work/wrapper" && go mod edit -replace "github.com/prometheus/prometheus=$work/prometheus"); then
        ui=builtin dir="$work/wrapper" tags=remove_all_sd,builtinassets
    else
        log "prometheus: the web UI build failed (see $work/ui.log): building without the web UI"
    fi
    gobuild "$dir" prometheus github.com/prometheus/prometheus/cmd/prometheus -tags "$tags" -ldflags "$ld"
    gobuild prometheus promtool github.com/prometheus/prometheus/cmd/promtool -tags remove_all_sd -ldflags "$ld"
    echo "$ui" >"$TOOLS/prometheus.web-ui"
    rm -rf "$work/prometheus/web/ui/node_modules" "$work/pnpm"  # 400 MB the next build fetches again
}

build_victorialogs() {
    # VictoriaLogs through a wrapper module that replaces its VictoriaMetrics dependency (tools/victorialogs/go.mod).
    local v=github.com/VictoriaMetrics/VictoriaMetrics/lib/buildinfo
    gobuild victorialogs victoria-logs github.com/VictoriaMetrics/VictoriaLogs/app/victoria-logs \
        -ldflags "-s -w -X $v.Version=victoria-logs-v1.51.1-0.20260624061259-dc94972a8708-nl2sql-obs"
}

build_telemetrygen() {
    gobuild telemetrygen telemetrygen github.com/open-telemetry/opentelemetry-collector-contrib/cmd/telemetrygen -ldflags "-s -w"
}

build_helm() {
    # Helm's version variables, so `helm version` and the chart's .Capabilities report v4.3.2.
    local v=helm.sh/helm/v4/internal/version
    gobuild helm helm helm.sh/helm/v4/cmd/helm -ldflags "-s -w -X $v.version=v4.3.2 -X $v.gitTreeState=clean"
}

build_sloth() {
    gobuild sloth sloth github.com/slok/sloth/cmd/sloth -ldflags "-s -w -X github.com/slok/sloth/internal/info.Version=v0.16.0"
}

build_alertmanager() {
    # The module ships without ui/app/dist (the built web UI its //go:embed needs): build from a copy
    # of the module (verified against tools/alertmanager/go.sum) with stub pages there.
    local src="$CACHE/build/alertmanager" mod
    mod="$(cd "$ROOT/tools/alertmanager" && go mod download -json github.com/prometheus/alertmanager | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
    [[ -d "$mod" ]] || { log "alertmanager: go mod download gave no module directory"; return 1; }
    rm -rf "$src" && mkdir -p "$(dirname "$src")" && cp -r "$mod" "$src" && chmod -R u+w "$src"
    # The two UIs' index pages (/ and /ui/) are placeholders pointing at the API; HTML is served only
    # from its precompressed .gz (ui/web.go), so that is the file written.
    local ui; for ui in elm mantine; do
        mkdir -p "$src/ui/app/dist/$ui"
        echo '<!doctype html><title>Alertmanager</title><p>Local build without the web UI: use the API, /api/v2/alerts and /api/v2/silences.</p>' \
            | gzip -9n >"$src/ui/app/dist/$ui/index.html.gz"
    done
    local v=github.com/prometheus/common/version
    local ld="-s -w -X $v.Version=0.35.0 -X $v.Revision=v0.35.0 -X $v.Branch=v0.35.0 -X $v.BuildUser=nl2sql-obs"
    local b; for b in alertmanager amtool; do
        (cd "$src" && go build -p "$PAR" -mod=readonly -ldflags "$ld" -o "$TOOLS/$b.tmp" "./cmd/$b")
        mv -f "$TOOLS/$b.tmp" "$TOOLS/$b"
    done
}

build_otelcol_nl2sql() {
    # ocb generates a main module from collector/manifest.yaml (outside the checkout) and compiles it.
    local src="$CACHE/build/otelcol-nl2sql"
    rm -rf "$src" && mkdir -p "$src"
    # output_path and name are ours: rewrite them in a copy of the manifest.
    python3 - "$ROOT/collector/manifest.yaml" "$src/manifest.yaml" "$src" <<'PY'
import re, sys
text = open(sys.argv[1]).read()
out = []
in_dist = False
for line in text.splitlines():
    if re.match(r"^dist:\s*$", line):
        in_dist = True
        out.append(line)
        out.append(f"  output_path: {sys.argv[3]}")
        continue
    if in_dist and re.match(r"^\S", line):
        in_dist = False
    if in_dist and re.match(r"^\s+output_path:", line):
        continue
    out.append(line)
open(sys.argv[2], "w").write("\n".join(out) + "\n")
PY
    (cd "$src" && "$TOOLS/builder" --config="$src/manifest.yaml" --ldflags="-s -w")
    local name
    name="$(sed -n 's/^[[:space:]]*name:[[:space:]]*//p' "$src/manifest.yaml" | head -1 | tr -d "\"'")"
    cp -f "$src/${name:-otelcol-nl2sql}" "$TOOLS/otelcol-nl2sql.tmp"
    mv -f "$TOOLS/otelcol-nl2sql.tmp" "$TOOLS/otelcol-nl2sql"
}

install_compose_plugin() {
    local plugins="${DOCKER_CONFIG:-$HOME/.docker}/cli-plugins"
    mkdir -p "$plugins"
    if ! cmp -s "$TOOLS/docker-compose" "$plugins/docker-compose" 2>/dev/null; then
        cp -f "$TOOLS/docker-compose" "$plugins/docker-compose.tmp" && mv -f "$plugins/docker-compose.tmp" "$plugins/docker-compose"
        log "installed $plugins/docker-compose (docker compose $("$TOOLS/docker-compose" version --short 2>/dev/null))"
    fi
}

one() {
    local name="$1" st bins inputs
    case "$name" in
        probe)          inputs=("$ROOT/tools/probe/go.mod" "$ROOT/tools/probe/main.go"); bins=(probe) ;;
        docker-compose) inputs=("$ROOT/tools/compose/go.mod" "$ROOT/tools/compose/go.sum"); bins=(docker-compose) ;;
        builder)        inputs=("$ROOT/tools/builder/go.mod" "$ROOT/tools/builder/go.sum"); bins=(builder) ;;
        jaeger)         inputs=("$ROOT/tools/jaeger/go.mod" "$ROOT/tools/jaeger/go.sum"); bins=(jaeger) ;;
        prometheus|promtool) name=prometheus; inputs=("$ROOT/tools/prometheus/go.mod" "$ROOT/tools/prometheus/go.sum"); bins=(prometheus promtool) ;;
        victorialogs|victoria-logs) name=victorialogs; inputs=("$ROOT/tools/victorialogs/go.mod" "$ROOT/tools/victorialogs/go.sum"); bins=(victoria-logs) ;;
        sloth)          inputs=("$ROOT/tools/sloth/go.mod" "$ROOT/tools/sloth/go.sum"); bins=(sloth) ;;
        alertmanager|amtool) name=alertmanager; inputs=("$ROOT/tools/alertmanager/go.mod" "$ROOT/tools/alertmanager/go.sum"); bins=(alertmanager amtool) ;;
        telemetrygen)   inputs=("$ROOT/tools/telemetrygen/go.mod" "$ROOT/tools/telemetrygen/go.sum"); bins=(telemetrygen) ;;
        helm)           inputs=("$ROOT/tools/helm/go.mod" "$ROOT/tools/helm/go.sum"); bins=(helm) ;;
        otelcol|otelcol-nl2sql)
            name=otelcol-nl2sql
            [[ -f "$ROOT/collector/manifest.yaml" ]] || { log "collector/manifest.yaml missing"; return 1; }
            one builder
            inputs=("$ROOT/collector/manifest.yaml" "$ROOT/tools/builder/go.sum"); bins=(otelcol-nl2sql) ;;
        *) log "unknown tool: $name"; return 2 ;;
    esac
    st="$(stamp_of "$name" "${inputs[@]}")"
    if up_to_date "$name" "$st" "${bins[@]}"; then
        log "$name: up to date"
    else
        log "$name: building (go $GOVER, -p $PAR)"
        timed "$name" "build_${name//-/_}"
        echo "$st" >"$STAMPS/$name"
    fi
    [[ "$name" != docker-compose ]] || install_compose_plugin
}

if (($# == 0)); then
    set -- probe docker-compose jaeger prometheus victorialogs telemetrygen helm otelcol-nl2sql sloth alertmanager
fi
for t in "$@"; do one "$t"; done
