#!/usr/bin/env bash
# make up: start the local stack, wait until every service is healthy, print the URLs.
#   COMPOSE_FILES   compose files (default compose/docker-compose.yml); add compose/docker-compose.vendor.yml
#                   for the production overlay
#   UP_TIMEOUT      seconds to wait for health (default 180)
#   GRAFANA_ADMIN_PASSWORD  used (and stored) when set; otherwise one is generated once
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

export NL2SQL_OBS_TOOLS="${NL2SQL_OBS_TOOLS:-$HOME/.cache/nl2sql-obs/bin}"
read -r -a files <<<"${COMPOSE_FILES:-compose/docker-compose.yml}"
args=()
for f in "${files[@]}"; do args+=(-f "$f"); done
timeout_s="${UP_TIMEOUT:-180}"

say() { printf '\033[1m==> %s\033[0m\n' "$*"; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

command -v docker >/dev/null || die "docker is not installed"
docker info >/dev/null 2>&1 || die "the Docker engine is not reachable (is dockerd running? can you use it without sudo?)"
if docker compose version >/dev/null 2>&1; then
  compose=(docker compose)
elif [[ -x "$NL2SQL_OBS_TOOLS/docker-compose" ]]; then
  compose=("$NL2SQL_OBS_TOOLS/docker-compose")
else
  die "no Docker Compose v2 ('docker compose'); 'make tools' builds one into $NL2SQL_OBS_TOOLS"
fi

# 1. The static HTTP prober every container uses as its healthcheck (the images have no shell).
export PROBE_BIN="${PROBE_BIN:-$NL2SQL_OBS_TOOLS/probe}"
if [[ ! -x "$PROBE_BIN" ]]; then
  say "building the healthcheck probe"
  [[ -x scripts/build-tools.sh ]] || die "scripts/build-tools.sh is missing; build tools/probe (go build) into $PROBE_BIN"
  scripts/build-tools.sh probe
  [[ -x "$PROBE_BIN" ]] || die "scripts/build-tools.sh probe did not produce $PROBE_BIN"
fi

# 2. Grafana's admin password: from GRAFANA_ADMIN_PASSWORD, else the stored one, else a new random one.
#    Kept in var/ (git-ignored, 0700). The file is 0644 because Grafana (uid 472) reads it through a bind mount.
pwfile="${GRAFANA_ADMIN_PASSWORD_FILE:-$root/var/grafana-admin-password}"
export GRAFANA_ADMIN_PASSWORD_FILE="$pwfile"
mkdir -p "$(dirname "$pwfile")"
chmod 700 "$(dirname "$pwfile")"
if [[ -n "${GRAFANA_ADMIN_PASSWORD:-}" ]]; then
  [[ "$GRAFANA_ADMIN_PASSWORD" != admin ]] || die "GRAFANA_ADMIN_PASSWORD=admin is not allowed"
  printf '%s' "$GRAFANA_ADMIN_PASSWORD" >"$pwfile"
elif [[ ! -s "$pwfile" ]]; then
  (umask 077; od -An -N18 -tx1 /dev/urandom | tr -d ' \n' >"$pwfile")
  say "generated a Grafana admin password into ${pwfile#"$root"/}"
fi
chmod 644 "$pwfile"

# 3. Images: the environment wins, then $NL2SQL_OBS_TOOLS/../images.env (written by `make images`:
#    the official image when pullable, else a local FROM-scratch build), then compose/.env's pinned tags.
images_env="${NL2SQL_OBS_IMAGES_ENV:-$(dirname "$NL2SQL_OBS_TOOLS")/images.env}"
if [[ -f "$images_env" ]]; then
  while IFS='=' read -r key value; do
    case "$key" in
      COLLECTOR_IMAGE|JAEGER_IMAGE|PROMETHEUS_IMAGE|GRAFANA_IMAGE)
        [[ -n "${!key:-}" ]] || export "$key=$value" ;;
    esac
  done <"$images_env"
fi

# 4. Grafana has no source build: when its image is neither here nor pullable (a machine without a
#    registry), start the rest of the stack rather than nothing, and say so.
started=()  # empty: every service
grafana_image="${GRAFANA_IMAGE:-$(sed -n 's/^GRAFANA_IMAGE=//p' compose/.env)}"
if ! docker image inspect "$grafana_image" >/dev/null 2>&1 && ! docker pull -q "$grafana_image" >/dev/null 2>&1; then
  printf 'warning: the Grafana image %s is not on this machine and cannot be pulled;
' "$grafana_image" >&2
  printf '         starting the collector, Jaeger and Prometheus without Grafana. To add it, make the
' >&2
  printf '         registry reachable or set GRAFANA_IMAGE to an image you have, then run make up again.
' >&2
  started=(collector jaeger prometheus)
fi

# 5. Start. A pull failure (no registry, unknown tag) gets a hint instead of a wall of text.
say "starting the stack (${files[*]})"
if ! out=$("${compose[@]}" "${args[@]}" up -d "${started[@]}" 2>&1); then
  printf '%s\n' "$out" >&2
  if grep -qiE 'pull|manifest|not found|denied|registry|toomanyrequests|no such host|i/o timeout' <<<"$out"; then
    cat >&2 <<'MSG'

An image could not be pulled. Either:
  - make the registry reachable (docker login, proxy), or
  - build local images of the collector, Jaeger and Prometheus from their official Go modules:
      make images && make up
    (`make images` writes their tags to images.env, which `make up` reads). Grafana has no local
    build: it needs its registry image (or set GRAFANA_IMAGE to one you have).
MSG
  fi
  exit 1
fi

# 6. Wait until every started service reports healthy.
say "waiting up to ${timeout_s}s for the services to become healthy"
deadline=$((SECONDS + timeout_s))
services="${started[*]:-$("${compose[@]}" "${args[@]}" config --services)}"
while :; do
  pending=()
  for s in $services; do
    id=$("${compose[@]}" "${args[@]}" ps -q "$s" 2>/dev/null || true)
    state=$([[ -n "$id" ]] && docker inspect -f '{{if .State.Health}}{{.State.Health.Status}}{{else}}{{.State.Status}}{{end}}' "$id" 2>/dev/null || echo missing)
    [[ "$state" == healthy ]] || pending+=("$s:$state")
  done
  ((${#pending[@]} == 0)) && break
  if ((SECONDS >= deadline)); then
    "${compose[@]}" "${args[@]}" ps >&2 || true
    die "not healthy after ${timeout_s}s: ${pending[*]} (see 'make logs')"
  fi
  sleep 3
done

url() {  # the host address compose actually published for <service> <container port>
  local a
  a=$("${compose[@]}" "${args[@]}" port "$1" "$2" 2>/dev/null | head -n1) || true
  printf '%s' "${a:-not published}"
}
pwshow="${pwfile#"$root"/}"
if ((${#started[@]})); then
  grafana_line="Grafana      not started (no image: see the warning above)"
else
  grafana_line="Grafana      http://$(url grafana 3000)    admin user ${GRAFANA_ADMIN_USER:-admin}, password: cat $pwshow  (anonymous visitors: Viewer)"
fi
cat <<EOF2

  nl2sql-observability stack is up.
  $grafana_line
  Jaeger       http://$(url jaeger 16686)
  Prometheus   http://$(url prometheus 9090)
  OTLP gRPC    $(url collector 4317)        OTLP HTTP  http://$(url collector 4318)
  Collector    http://$(url collector 13133)/   (health)

  Next: make demo   ·   make ps   ·   make logs   ·   make down   ·   make clean
EOF2
