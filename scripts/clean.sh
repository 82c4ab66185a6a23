#!/usr/bin/env bash
# make clean: stop the stack and remove its containers and network. The data volumes (traces,
# metrics, Grafana state, the collector's queue) are removed only with CONFIRM=yes or after asking.
#   make clean              asks before deleting volumes (keeps them when there is no terminal)
#   make clean CONFIRM=yes  deletes them without asking
set -euo pipefail
cd "$(dirname "$0")/.."
export NL2SQL_OBS_TOOLS="${NL2SQL_OBS_TOOLS:-$HOME/.cache/nl2sql-obs/bin}"
export PROBE_BIN="${PROBE_BIN:-$NL2SQL_OBS_TOOLS/probe}"
export GRAFANA_ADMIN_PASSWORD_FILE="${GRAFANA_ADMIN_PASSWORD_FILE:-$PWD/var/grafana-admin-password}"
read -r -a files <<<"${COMPOSE_FILES:-compose/docker-compose.yml}"
args=()
for f in "${files[@]}"; do args+=(-f "$f"); done
if docker compose version >/dev/null 2>&1; then
  compose=(docker compose)
elif [[ -x "$NL2SQL_OBS_TOOLS/docker-compose" ]]; then
  compose=("$NL2SQL_OBS_TOOLS/docker-compose")
else
  echo "error: no Docker Compose v2 ('docker compose'); 'make tools' builds one" >&2
  exit 1
fi

volumes=$("${compose[@]}" "${args[@]}" config --volumes | sed "s/^/  /")
remove=no
case "${CONFIRM:-}" in
  yes|YES|y|1|true) remove=yes ;;
  "")
    if [[ -t 0 ]]; then
      printf 'Delete the stack'"'"'s data volumes (all stored traces, metrics, dashboards state, queued telemetry)?\n%s\nType "yes" to delete: ' "$volumes"
      read -r answer || answer=
      [[ "$answer" == yes ]] && remove=yes
    fi ;;
esac

if [[ "$remove" == yes ]]; then
  "${compose[@]}" "${args[@]}" down --volumes --remove-orphans
  echo "Stopped the stack and deleted its volumes."
else
  "${compose[@]}" "${args[@]}" down --remove-orphans
  echo "Stopped the stack; kept the data volumes (make clean CONFIRM=yes deletes them)."
fi
