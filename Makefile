# The two commands: `make run` (set up, build, run the main job) and `make test`
# (set up, build, run every test and lint). Both are idempotent and quick the second time.

PYTHON ?= python3
VENV := .venv
PY := $(abspath $(VENV))/bin/python
export PYO3_PYTHON := $(PY)
export VIRTUAL_ENV := $(abspath $(VENV))
export PATH := $(abspath $(VENV))/bin:$(PATH)

RUST_SOURCES := $(shell find src -name '*.rs') Cargo.toml Cargo.lock
PY_SOURCES := $(wildcard python/kcmp_rs/*.py python/kcmp_rs/*.pyi)

.PHONY: run test lint test-py test-rust bench bench-build build setup wheel-test clean

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

# The shipped extension: the features of pyproject's [tool.maturin] (`python`). The
# bench build below installs over it, so each of the two builds drops the other's stamp
# first: whichever ran last, the other target rebuilds next time.
build: $(VENV)/.built

$(VENV)/.built: $(VENV)/.deps $(RUST_SOURCES) pyproject.toml $(PY_SOURCES)
	rm -f $(VENV)/.built-bench
	$(PY) -m maturin develop --release --quiet
	touch $@

# The extension with the `bench` feature (`_native.bench_syscall_floor`), for `make bench`.
bench-build: $(VENV)/.built-bench

$(VENV)/.built-bench: $(VENV)/.deps $(RUST_SOURCES) pyproject.toml $(PY_SOURCES)
	rm -f $(VENV)/.built
	$(PY) -m maturin develop --release --quiet --features bench
	touch $@

# Clippy sees each feature set: the core alone, with the binding, with the bench replay.
lint: build
	$(PY) -m ruff check python tests benches
	$(PY) -m ruff format --check python tests benches
	cargo fmt --check
	cargo clippy --all-targets --quiet -- -D warnings
	cargo clippy --all-targets --quiet --features python -- -D warnings
	cargo clippy --all-targets --quiet --all-features -- -D warnings
	bash scripts/planted-unsafe.sh
	$(PY) -m mypy --strict python/kcmp_rs tests
	$(PY) -m mypy.stubtest kcmp_rs._native --allowlist stubtest-allowlist.txt

# The core's tests need no Python; the second run checks the binding builds with them.
test-rust:
	cargo test --quiet
	cargo test --quiet --features python

test-py: build
	$(PY) -m pytest -q tests

bench: bench-build
	$(PY) -m pytest -q benches --benchmark-columns=median,ops --benchmark-sort=name -s

wheel-test: $(VENV)/.deps
	bash scripts/wheel-test.sh

clean:
	rm -rf $(VENV) target dist
