// Pins Alertmanager's module (its hash is in go.sum). scripts/build-tools.sh builds cmd/alertmanager
// and cmd/amtool from a copy of this module with placeholder pages in ui/app/dist (the module ships without the
// built web UI that its //go:embed needs): API complete, no web UI.
module github.com/nl2sql-observability/tools/alertmanager

go 1.26.0

require github.com/prometheus/alertmanager v0.35.0
