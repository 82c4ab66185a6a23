#!/usr/bin/env bash
# make clean: stop the stack and remove its containers and network. The data volumes (traces,
# metrics, Grafana state, the collector's queue) are removed only with CONFIRM=yes or after asking.
#   make clean              asks before deleting volumes (keeps them when there is no terminal)
#   make clean CONFIRM=yes  deletes them without asking
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "$0")/lib.sh"
find_compose
load_images_env

volumes=$(compose config --volumes | sed "s/^/  /")
remove=no
case "${CONFIRM:-}" in
  yes|YES|y|1|true) remove=yes ;;
  "")
    if [[ -t 0 ]]; then
      printf 'Delete the stack'"'"'s data volumes (all stored traces, metrics, logs, dashboards state, queued telemetry)?\n%s\nType "yes" to delete: ' "$volumes"
      read -r answer || answer=
      [[ "$answer" == yes ]] && remove=yes
    fi ;;
esac

if [[ "$remove" == yes ]]; then
  compose down --volumes --remove-orphans
  echo "Stopped the stack and deleted its volumes."
else
  compose down --remove-orphans
  echo "Stopped the stack; kept the data volumes (make clean CONFIRM=yes deletes them)."
fi
