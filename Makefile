# The conversation service. `make help` lists the targets.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.DEFAULT_GOAL := help
.PHONY: help install lock run test test-unit lint bench bench-scale demo clean

help: ## List the targets
	@grep -E '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  %-12s %s\n", $$1, $$2}'

# The pinned versions first (requirements.lock: every dependency, the dev tools included), then
# the project itself without resolving anything again: the same install on every machine.
$(STAMP): pyproject.toml setup.cfg requirements.lock
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.lock
	$(BIN)/python -m pip install --quiet --no-deps -e .
	@touch $(STAMP)

install: $(STAMP) ## Create .venv/ and install the service with its test tools, as pinned in requirements.lock

lock: ## Pin pyproject.toml's dependencies (with dev) anew into requirements.lock (pip-tools)
	@test -x $(BIN)/pip-compile || $(BIN)/python -m pip install --quiet pip-tools
	$(BIN)/pip-compile --quiet --extra dev --strip-extras --no-emit-index-url \
		--no-emit-find-links --output-file requirements.lock pyproject.toml

run: $(STAMP) ## Run everything: embedded Redis + PostgreSQL (unless URLs are set), worker, beat, API, Flower
	$(BIN)/conversation run

test: $(STAMP) lint ## The whole suite: import contracts, unit, integration and end-to-end tests
	$(BIN)/pytest

test-unit: $(STAMP) ## Unit tests, and the contract suites on the fakes and fakeredis (no servers)
	$(BIN)/pytest tests/unit tests/contract -m "not integration"

lint: $(STAMP) ## Layer rules (import-linter contracts in setup.cfg), pyflakes-level checks (ruff), types (mypy: strict on the domain and services)
	$(BIN)/lint-imports
	$(BIN)/ruff check --select F,E9 .
	$(BIN)/mypy

bench: $(STAMP) ## Benchmarks beside their anchors; writes BENCHMARKS.md
	$(BIN)/python -m bench

bench-scale: $(STAMP) ## Ten times the data: 1 M then 10 M messages (COPY), stats/list/search/context beside their 1 M values; not in `make bench`
	$(BIN)/python -m bench --scale

demo: $(STAMP) ## Play agents against a running `make run` (in another terminal)
	$(BIN)/conversation simulate

clean: ## Remove the embedded servers' data (var/)
	rm -rf var/
