#!/usr/bin/env bash
# make up: start the local stack, wait until every service is healthy, print the URLs.
# Needs Docker (with compose v2) and nothing else: the healthcheck probe is built inside Docker.
#   COMPOSE_FILES         compose files (default compose/docker-compose.yml); add
#                         compose/docker-compose.vendor.yml for the production overlay
#   COMPOSE_PROJECT_NAME  and the *_PORT variables of compose/.env: override them to run a second
#                         stack beside the first (the tests do)
#   UP_TIMEOUT            seconds to wait for health (default 180)
#   GRAFANA_ADMIN_PASSWORD  used (and stored) when set; otherwise one is generated once
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "$0")/lib.sh"
timeout_s="${UP_TIMEOUT:-180}"

say() { printf '\033[1m==> %s\033[0m\n' "$*"; }

find_compose
docker info >/dev/null 2>&1 || die "the Docker engine is not reachable (is dockerd running? can you use it without sudo?)"

# 1. Grafana's admin password: from GRAFANA_ADMIN_PASSWORD, else the stored one, else a new random one.
#    Kept in var/ (git-ignored, 0700). The file is 0644 because Grafana (uid 472) reads it through a bind mount.
pwfile="$GRAFANA_ADMIN_PASSWORD_FILE"
mkdir -p "$(dirname "$pwfile")"
chmod 700 "$(dirname "$pwfile")"
if [[ -n "${GRAFANA_ADMIN_PASSWORD:-}" ]]; then
  [[ "$GRAFANA_ADMIN_PASSWORD" != admin ]] || die "GRAFANA_ADMIN_PASSWORD=admin is not allowed"
  printf '%s' "$GRAFANA_ADMIN_PASSWORD" >"$pwfile"
elif [[ ! -s "$pwfile" ]]; then
  (umask 077; od -An -N18 -tx1 /dev/urandom | tr -d ' \n' >"$pwfile")
  say "generated a Grafana admin password into ${pwfile#"$ROOT"/}"
fi
chmod 644 "$pwfile"

# 1b. Alertmanager's receivers read their webhook URLs from files (it expands no variables): written
#     from ALERT_PAGE_WEBHOOK_URL / ALERT_TICKET_WEBHOOK_URL (environment, else compose/.env) at every
#     start. 0644 inside the 0700 var/ directory: Alertmanager (uid 65534) reads them through a bind mount.
for kind in PAGE TICKET; do
  urlvar="ALERT_${kind}_WEBHOOK_URL" filevar="ALERT_${kind}_WEBHOOK_URL_FILE"
  url="${!urlvar:-$(env_value "$urlvar")}"
  [[ "$url" =~ ^https?://[^[:space:]]+$ ]] || die "$urlvar must be an http(s) URL, got '${url}' (compose/.env or the environment)"
  mkdir -p "$(dirname "${!filevar}")"
  chmod 700 "$(dirname "${!filevar}")"
  printf '%s' "$url" >"${!filevar}"
  chmod 644 "${!filevar}"
done

# 2. Images: the environment wins, then images.env (written by `make images`: the official image when
#    pullable, else a local FROM-scratch build), then compose/.env's pinned tags.
load_images_env

# 3. Grafana has no source build: when its image is neither here nor pullable (a machine without a
#    registry), start the rest of the stack rather than nothing, and say so.
started=()  # empty: every service
grafana_image="${GRAFANA_IMAGE:-$(env_value GRAFANA_IMAGE)}"
if ! docker image inspect "$grafana_image" >/dev/null 2>&1 && ! docker pull -q "$grafana_image" >/dev/null 2>&1; then
  printf 'warning: the Grafana image %s is not on this machine and cannot be pulled;\n' "$grafana_image" >&2
  printf '         starting the stack without Grafana. To add it, make the registry reachable or set\n' >&2
  printf '         GRAFANA_IMAGE to an image you have, then run make up again.\n' >&2
  mapfile -t started < <(compose config --services | grep -vx grafana)
fi

# 4. Start. A pull or build failure (no registry, unknown tag) gets a hint instead of a wall of text.
say "starting the stack (${COMPOSE_ARGS[*]})"
if ! out=$(compose up -d "${started[@]}" 2>&1); then
  printf '%s\n' "$out" >&2
  if grep -qiE 'pull|manifest|not found|denied|registry|toomanyrequests|no such host|i/o timeout|failed to solve|build' <<<"$out"; then
    cat >&2 <<'MSG'

An image could not be pulled or built. Either:
  - make the registry reachable (docker login, proxy), or
  - build local images of the backends and the healthcheck probe from their official Go modules
    (needs Go): make images && make up
    (`make images` writes their tags to images.env, which `make up` reads). Grafana has no local
    build: it needs its registry image (or set GRAFANA_IMAGE to one you have).
MSG
  fi
  exit 1
fi

# 5. Wait until every started service reports healthy (the one-shot probe service: exited with 0).
say "waiting up to ${timeout_s}s for the services to become healthy"
deadline=$((SECONDS + timeout_s))
if ((${#started[@]})); then services=("${started[@]}"); else mapfile -t services < <(compose config --services); fi
while :; do
  pending=()
  for s in "${services[@]}"; do
    id=$(compose ps -q --all "$s" 2>/dev/null || true)
    state=missing
    if [[ -n "$id" ]]; then
      state=$(docker inspect -f '{{if .State.Health}}{{.State.Health.Status}}{{else}}{{.State.Status}}:{{.State.ExitCode}}{{end}}' "$id" 2>/dev/null || echo missing)
    fi
    [[ "$state" == healthy || "$state" == exited:0 ]] || pending+=("$s:$state")
  done
  ((${#pending[@]} == 0)) && break
  if ((SECONDS >= deadline)); then
    compose ps --all >&2 || true
    die "not healthy after ${timeout_s}s: ${pending[*]} (see 'make logs')"
  fi
  sleep 3
done

url() {  # the host address compose actually published for <service> <container port>
  local a
  a=$(compose port "$1" "$2" 2>/dev/null | head -n1) || true
  printf '%s' "${a:-not published}"
}
# Local builds from Go modules that carry no web UI are labelled so (images/*/Dockerfile): for them
# the line gives the JSON API that works instead of a page that does not.
web_ui() {  # <image variable> -> the image's org.nl2sql-obs.web-ui label (empty: an official image)
  local image="${!1:-$(env_value "$1")}"
  docker image inspect -f '{{index .Config.Labels "org.nl2sql-obs.web-ui"}}' "$image" 2>/dev/null || true
}
jaeger_base="http://$(url jaeger 16686)"
if [[ "$(web_ui JAEGER_IMAGE)" == none ]]; then
  jaeger_line="$jaeger_base/api/services   (JSON API, e.g. /api/traces/<trace id>: this local build from Jaeger's Go module has no web UI, which is a separate npm build)"
else
  jaeger_line="$jaeger_base   (traces; Monitor tab: set Span Kind to Internal or Client)"
fi
prometheus_base="http://$(url prometheus 9090)"
if [[ "$(web_ui PROMETHEUS_IMAGE)" == none ]]; then
  prometheus_line="$prometheus_base/api/v1/query?query=up   (JSON API: this local build has no web UI)"
else
  prometheus_line="$prometheus_base/query"
fi
pwshow="${pwfile#"$ROOT"/}"
if ((${#started[@]})); then
  grafana_line="Grafana       not started (no image: see the warning above)"
else
  grafana_line="Grafana       http://$(url grafana 3000)    admin user ${GRAFANA_ADMIN_USER:-$(env_value GRAFANA_ADMIN_USER)}, password: cat $pwshow  (anonymous visitors: Viewer)"
fi
cat <<EOF2

  nl2sql-observability stack is up.
  $grafana_line
  Jaeger        $jaeger_line
  Prometheus    $prometheus_line
  Alertmanager  http://$(url alertmanager 9093)/   (alerts and silences; a local build has no web UI: /api/v2/alerts)
  VictoriaLogs  http://$(url victorialogs 9428)/select/vmui   (logs; LogsQL API at /select/logsql/query)
  OTLP gRPC     $(url collector 4317)        OTLP HTTP  http://$(url collector 4318)
  Collector     http://$(url collector 13133)/   (health)

  Next: make demo   ·   make ps   ·   make logs   ·   make down   ·   make clean
EOF2
