# nl2sql-observability: `make up` starts the stack, `make test` proves it. `make help` lists the rest.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# Go-built backends and tools (otelcol, jaeger, prometheus, promtool, victoria-logs, telemetrygen,
# sloth, alertmanager, amtool, docker compose v2), cached outside the checkout so a fresh clone on the same machine reuses them.
export NL2SQL_OBS_TOOLS ?= $(HOME)/.cache/nl2sql-obs/bin
# up/down/ps/logs/clean take the compose files from COMPOSE_FILES (scripts/lib.sh), e.g.
#   make up COMPOSE_FILES="compose/docker-compose.yml compose/docker-compose.vendor.yml"
# make up SCALE=1 (and make down/ps/logs SCALE=1): the scale-out profile, an agent collector in front of
# two tail-sampling collectors (compose/docker-compose.scale.yml, docs/scaling.md).
ifneq ($(SCALE),)
export COMPOSE_FILES ?= compose/docker-compose.yml compose/docker-compose.scale.yml
endif
# make demo: the app's log lines go over OTLP to the log store, and to this file when set.
DEMO_LOG_FILE ?=
# make demo runs in its own venv with what a user installs ('.[demo]', no test extras: the other
# LangChain instrumentors the tests install would add their spans to the demo's traces), under its
# own service name, so an app of yours (OTEL_SERVICE_NAME=...) is never merged into the demo.
DEMO_VENV ?= .venv-demo
DEMO_SERVICE_NAME ?= nl2sql-demo
# A port of the stack: the environment's *_PORT (as make up reads it), else compose/.env's.
stack_port = $(or $($(1)),$(shell sed -n 's/^$(1)=//p' compose/.env))
DEMO_LINKS = --jaeger-url http://127.0.0.1:$(call stack_port,JAEGER_UI_PORT) \
	--prometheus-url http://127.0.0.1:$(call stack_port,PROMETHEUS_PORT) \
	--logs-url http://127.0.0.1:$(call stack_port,VICTORIALOGS_PORT) \
	--grafana-url http://127.0.0.1:$(call stack_port,GRAFANA_PORT)

.PHONY: help install lint unit package stack-check integration test bench tools images slo up down ps logs demo clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

# constraints.txt locks every transitive dependency to the set the tests last passed with
# (regenerate: .venv/bin/pip freeze --exclude-editable > constraints.txt, then keep the lines marked
# `; python_version < "3.11"`: what Python 3.10 needs instead). pyproject.toml holds the ranges.
$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -c constraints.txt --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e '.[demo,dev]'
	@touch $@

install: $(VENV)/.installed ## create .venv with the package, the demo and the dev tools

$(DEMO_VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(DEMO_VENV)
	$(DEMO_VENV)/bin/python -m pip install --quiet -c constraints.txt --upgrade pip
	$(DEMO_VENV)/bin/python -m pip install --quiet -c constraints.txt -e '.[demo]'
	@touch $@

lint: install ## ruff, mypy and shellcheck
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	shellcheck -x scripts/*.sh .ci/run

# nox sessions (noxfile.py): unit-3.10 ... unit-3.13 against constraints.txt, lowest against the
# lower bounds of pyproject's ranges, future with the clock a year ahead (libfaketime); virtualenvs in
# .nox are reused (-r). NOX_SESSIONS picks some.
NOX := $(VENV)/bin/nox -r

unit: install ## unit tests on Python 3.10-3.13, on the lowest allowed dependencies and a year ahead (nox)
	$(NOX) $(if $(NOX_SESSIONS),-s $(NOX_SESSIONS))

package: install ## build, check and smoke-test the sdist and wheel (alone, and beside an app's own pins)
	$(NOX) -s package wheel wheel_beside_app

tools: ## build the real backends and tools from their Go modules (cached)
	scripts/build-tools.sh

slo: install ## regenerate every alert rule from the SLO file (slo/nl2sql.yml; burn rates through Sloth)
	scripts/build-tools.sh sloth
	$(PY) scripts/slo_rules.py

stack-check: install tools ## check every config file with the real tools
	$(PY) -m pytest tests/stack

images: tools ## the backends' and the probe's images: official when pullable, else local builds
	scripts/build-images.sh

integration: install images ## testcontainers tests against the real backends
	$(PY) -m pytest tests/integration

test: lint unit package stack-check integration ## everything CI runs

bench: install ## benchmarks (ratios against a baseline run in the same process)
	@for b in benchmarks/bench_*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

up: ## start the stack (Docker and make are enough), wait until healthy, print the URLs
	scripts/up.sh

down: ## stop the stack (keeps the data volumes)
	scripts/compose.sh down

ps: ## show the stack's containers and health
	scripts/compose.sh ps --all

logs: ## follow the stack's own logs (the app's logs are in the log store: VictoriaLogs)
	scripts/compose.sh logs -f --tail=100

demo: $(DEMO_VENV)/.installed ## run the demo app (service nl2sql-demo) against the running stack (DEMO_ARGS=..., DEMO_LOG_FILE=demo.log)
	OTEL_SERVICE_NAME=$(DEMO_SERVICE_NAME) OBSERVABILITY_EXPORTER=otlp \
		OTEL_EXPORTER_OTLP_ENDPOINT=$${OTEL_EXPORTER_OTLP_ENDPOINT:-http://127.0.0.1:$(call stack_port,OTLP_HTTP_PORT)} \
		OBSERVABILITY_LOG_STREAM=$(if $(DEMO_LOG_FILE),file:$(DEMO_LOG_FILE),none) \
		$(DEMO_VENV)/bin/opentelemetry-instrument $(DEMO_VENV)/bin/nl2sql-obs demo $(DEMO_LINKS) $(DEMO_ARGS)

clean: ## stop the stack; removes the data volumes only after asking, or with CONFIRM=yes
	scripts/clean.sh
