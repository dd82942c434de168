# tuquan: every target does its own setup (scripts/setup.sh), so on a fresh Debian 12 or
# Raspberry Pi OS machine `make demo` and `make test` are all it takes.
#
#   make demo       a simulated guard post reports a panic to a commune receiver, end to end
#   make test       lint, then the test suite (pytest -q; add PYTEST_ARGS='-k outbox' etc.)
#   make lint       ruff check, ruff format --check (whole tree), mypy, the import contract (lint-imports)
#   make bench      benchmarks (python -m bench.run_all; BENCH_ARGS=--quick for a short run)
#   make setup      only the setup: .venv, pip install -e '.[dev,sim]', the default model, Mosquitto, npm packages
#   make clean      caches, build output and the demo's data; make distclean also .venv, node_modules

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

VENV := .venv
BIN := $(VENV)/bin
PYTEST_ARGS ?=
BENCH_ARGS ?=

.PHONY: help setup demo test lint bench clean distclean

help:
	@sed -n 's/^#   //p' $(firstword $(MAKEFILE_LIST))

setup:
	bash scripts/setup.sh

demo:
	bash scripts/demo.sh

lint:
	bash scripts/setup.sh --tests
	@rc=0; \
	$(BIN)/ruff check . || rc=1; \
	$(BIN)/ruff format --check . || rc=1; \
	$(BIN)/mypy || rc=1; \
	$(BIN)/lint-imports || rc=1; \
	exit $$rc

test: lint
	$(BIN)/pytest -q $(PYTEST_ARGS)

bench: setup
	$(BIN)/python -m bench.run_all $(BENCH_ARGS)

clean:
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -prune -exec rm -rf {} +
	rm -rf .pytest_cache .mypy_cache .ruff_cache .hypothesis build dist *.egg-info
	rm -rf data/demo-hub data/demo-receiver

distclean: clean
	rm -rf $(VENV) node_modules
