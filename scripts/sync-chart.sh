#!/usr/bin/env bash
# Copies the configs the Helm chart deploys into the chart (Helm's .Files cannot read outside it), so the
# chart and compose run the same files: the collector tiers, the Prometheus recording rules, the Grafana
# dashboards and provisioning. Run it after changing any of them; tests/stack/test_helm.py fails while
# a copy differs from its source. files/ holds nothing else: a copy whose source is gone is removed.
#   scripts/sync-chart.sh          (make chart-sync)
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
FILES="$ROOT/deploy/helm/nl2sql-observability/files"

# DEST_DIR SOURCE...: DEST_DIR (under the chart's files/) holds exactly these files
mirror() {
    local dest="$FILES/$1" f keep; shift
    mkdir -p "$dest"
    for f in "$dest"/*; do
        [[ -e "$f" ]] || continue
        keep=no
        for s in "$@"; do [[ "$(basename "$s")" != "$(basename "$f")" ]] || keep=yes; done
        [[ "$keep" == yes ]] || rm -f "$f"
    done
    for f in "$@"; do
        cmp -s "$f" "$dest/$(basename "$f")" || cp -f "$f" "$dest/$(basename "$f")"
    done
}

mirror collector "$ROOT"/collector/{config,agent,sampler}.yaml
mirror prometheus/rules "$ROOT"/prometheus/rules/*.yml
mirror grafana/dashboards "$ROOT"/grafana/dashboards/*.json
mirror grafana/provisioning/datasources "$ROOT"/grafana/provisioning/datasources/*.yaml
mirror grafana/provisioning/alerting "$ROOT"/grafana/provisioning/alerting/*.yaml
echo "sync-chart: ${FILES#"$ROOT"/} matches its sources"
