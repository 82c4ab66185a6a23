# shellcheck shell=bash
# Shared preamble of the stack scripts (up.sh, compose.sh, clean.sh, build-images.sh): sourced, not run.
#
# After `source scripts/lib.sh`:
#   ROOT          the repository (and the current directory)
#   NL2SQL_OBS_TOOLS  where scripts/build-tools.sh puts the Go-built tools (exported)
#   COMPOSE_ARGS  (-f FILE ...) from COMPOSE_FILES (default compose/docker-compose.yml)
#   env_value KEY     KEY's value in compose/.env, the one place that pins image tags and ports
#   find_compose      sets COMPOSE_CMD to `docker compose`, else the docker-compose v2 that
#                     scripts/build-tools.sh built; fails with a hint when there is neither
#   load_images_env   exports the image names `make images` chose (images.env) unless already set
#   compose ARGS...   runs compose with the files above
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT" || exit 1
export NL2SQL_OBS_TOOLS="${NL2SQL_OBS_TOOLS:-$HOME/.cache/nl2sql-obs/bin}"
# compose/.env names it relative to compose/; an absolute path works from anywhere
export GRAFANA_ADMIN_PASSWORD_FILE="${GRAFANA_ADMIN_PASSWORD_FILE:-$ROOT/var/grafana-admin-password}"
export ALERT_PAGE_WEBHOOK_URL_FILE="${ALERT_PAGE_WEBHOOK_URL_FILE:-$ROOT/var/alertmanager/page-webhook-url}"
export ALERT_TICKET_WEBHOOK_URL_FILE="${ALERT_TICKET_WEBHOOK_URL_FILE:-$ROOT/var/alertmanager/ticket-webhook-url}"
ENV_FILE="$ROOT/compose/.env"
IMAGES_ENV="${NL2SQL_OBS_IMAGES_ENV:-$(dirname "$NL2SQL_OBS_TOOLS")/images.env}"
IMAGE_VARS=(COLLECTOR_IMAGE JAEGER_IMAGE PROMETHEUS_IMAGE ALERTMANAGER_IMAGE VICTORIALOGS_IMAGE PROBE_IMAGE GRAFANA_IMAGE)

read -r -a _compose_files <<<"${COMPOSE_FILES:-compose/docker-compose.yml}"
COMPOSE_ARGS=()
for _f in "${_compose_files[@]}"; do COMPOSE_ARGS+=(-f "$_f"); done
unset _f _compose_files

die() { printf 'error: %s\n' "$*" >&2; exit 1; }

env_value() { # KEY -> its value in compose/.env (empty when absent)
    sed -n "s/^$1=//p" "$ENV_FILE" | tail -n1
}

find_compose() {
    command -v docker >/dev/null || die "docker is not installed"
    if docker compose version >/dev/null 2>&1; then
        COMPOSE_CMD=(docker compose)
    elif [[ -x "$NL2SQL_OBS_TOOLS/docker-compose" ]]; then
        COMPOSE_CMD=("$NL2SQL_OBS_TOOLS/docker-compose")
    else
        die "no Docker Compose v2 ('docker compose'): install the compose plugin, or 'make tools' builds one into $NL2SQL_OBS_TOOLS"
    fi
}

load_images_env() {
    [[ -f "$IMAGES_ENV" ]] || return 0
    local key value var
    while IFS='=' read -r key value; do
        for var in "${IMAGE_VARS[@]}"; do
            if [[ "$key" == "$var" && -z "${!var:-}" ]]; then
                export "$key=$value"
            fi
        done
    done <"$IMAGES_ENV"
}

compose() {
    "${COMPOSE_CMD[@]}" "${COMPOSE_ARGS[@]}" "$@"
}
