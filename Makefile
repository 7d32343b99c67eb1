# The two commands: `make run` (set up, build, run the main job) and `make test`
# (set up, build, run every test and lint). Both are idempotent and quick the second time.

PYTHON ?= python3
VENV := .venv
PY := $(abspath $(VENV))/bin/python
export PYO3_PYTHON := $(PY)
export VIRTUAL_ENV := $(abspath $(VENV))
export PATH := $(abspath $(VENV))/bin:$(PATH)

RUST_SOURCES := $(wildcard src/*.rs) Cargo.toml
PY_SOURCES := $(wildcard python/kcmp_rs/*.py python/kcmp_rs/*.pyi)

.PHONY: run test lint test-py test-rust bench build setup wheel-test clean

run: build
	$(PY) -m kcmp_rs demo
	@echo
	$(PY) -m kcmp_rs scan --example

test: build lint test-rust test-py

setup: $(VENV)/.deps

$(VENV)/.deps: requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements-dev.txt
	touch $@

build: $(VENV)/.built

$(VENV)/.built: $(VENV)/.deps $(RUST_SOURCES) pyproject.toml $(PY_SOURCES)
	$(PY) -m maturin develop --release --quiet
	touch $@

lint: build
	$(PY) -m ruff check python tests benches
	$(PY) -m ruff format --check python tests benches
	cargo fmt --check
	cargo clippy --all-targets --quiet -- -D warnings
	$(PY) -m mypy --strict python/kcmp_rs tests
	$(PY) -m mypy.stubtest kcmp_rs._native --allowlist stubtest-allowlist.txt

test-rust:
	cargo test --quiet

test-py: build
	$(PY) -m pytest -q tests

bench: build
	$(PY) -m pytest -q benches --benchmark-columns=median,ops --benchmark-sort=name -s

wheel-test: $(VENV)/.deps
	bash scripts/wheel-test.sh

clean:
	rm -rf $(VENV) target dist
