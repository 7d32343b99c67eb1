# The two commands: `make run` (set up, build, run the main job) and `make test`
# (set up, build, run every test and lint, build the manual). Both are idempotent.

PYTHON ?= python3
VENV := .venv
PY := $(abspath $(VENV))/bin/python
export PYO3_PYTHON := $(PY)
export VIRTUAL_ENV := $(abspath $(VENV))
export PATH := $(abspath $(VENV))/bin:$(PATH)

RUST_SOURCES := $(shell find src -name '*.rs') Cargo.toml Cargo.lock
PY_SOURCES := $(wildcard python/kcmp_rs/*.py python/kcmp_rs/*.pyi python/kcmp_rs/cli/*.py python/_kcmp_rs_cli/*.py)

.PHONY: help run test test-all lint lint-py lint-rust format test-py test-rust test-slow bench bench-build build setup system-deps docs docs-picture cli-reference shell-files wheel-test kernel-test container-test lsfd-root clean

help: ## List the targets, one line each
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/:.*## /\t/' | expand -t 16

run: build ## Set up, build, run the man-page demo and the example scan
	$(PY) -m kcmp_rs demo
	@echo
	$(PY) -m kcmp_rs scan --example

test: build lint test-rust test-py docs ## Set up, build, run every test and lint but the long rounds; build the manual

# .ci/run starts here: the README's test command, then what it leaves out.
test-all: ## make test, then the long rounds of make test-slow (what .ci/run starts with)
	$(MAKE) test
	$(MAKE) test-slow

setup: system-deps $(VENV)/.deps ## Create .venv with the development requirements; the system packages

# Graphviz (tests/test_dot.py, make docs-picture), zsh and fish (the completion tests) and
# man; Prometheus, promtool and node_exporter (tests/test_prom_e2e.py), their services
# left stopped: installed from Debian's packages when missing and we are root (CI is).
system-deps: ## Install Graphviz, zsh, fish, man, Prometheus, node_exporter if missing (as root)
	bash scripts/setup-system.sh
	bash scripts/setup-prometheus.sh

$(VENV)/.deps: requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements-dev.txt
	touch $@

# The shipped extension: the features of pyproject's [tool.maturin] (`python`).
build: $(VENV)/.built ## Build the extension into .venv (maturin develop --release)

$(VENV)/.built: $(VENV)/.deps $(RUST_SOURCES) pyproject.toml $(PY_SOURCES)
	$(PY) -m maturin develop --release --quiet
	touch $@

# The syscall floor of figures 3 and 10 is a cargo bench target (benches/syscall_floor.rs,
# the core alone): built with cargo's bench profile, then copied from wherever cargo put
# it (its JSON messages name the executable) to the one path benches/_benchlib.py runs.
FLOOR_BIN := target/bench/syscall_floor

bench-build: build $(FLOOR_BIN) ## Build the extension and the syscall-floor bench binary

$(FLOOR_BIN): $(RUST_SOURCES) benches/syscall_floor.rs | $(VENV)/.deps
	cargo bench --no-run --quiet --bench syscall_floor --message-format=json-render-diagnostics \
		> $(VENV)/syscall-floor-build.json
	exe=$$($(PY) -c 'import json, sys; print(*{m["executable"] for m in map(json.loads, sys.stdin) if m.get("reason") == "compiler-artifact" and m["target"]["name"] == "syscall_floor" and m["executable"]})' \
		< $(VENV)/syscall-floor-build.json) && \
		test -x "$$exe" && mkdir -p $(@D) && cp "$$exe" $@

lint: lint-py lint-rust ## ruff, rustfmt, clippy (every feature set), the unsafe lints, mypy, stubtest

lint-py: build ## ruff check and format, mypy --strict, stubtest
	$(PY) -m ruff check python tests benches scripts
	$(PY) -m ruff format --check python tests benches scripts
	$(PY) -m mypy --strict python/kcmp_rs python/_kcmp_rs_cli tests scripts/gen_shell_files.py
	$(PY) -m mypy.stubtest kcmp_rs._native --allowlist stubtest-allowlist.txt

# Clippy sees each feature set: the core alone, with the binding, and every feature at
# once; --all-targets includes the bench binary (benches/syscall_floor.rs).
lint-rust: $(VENV)/.deps ## rustfmt, clippy -D warnings on each feature set, planted-unsafe check
	cargo fmt --check
	cargo clippy --all-targets --quiet -- -D warnings
	cargo clippy --all-targets --quiet --features python -- -D warnings
	cargo clippy --all-targets --quiet --all-features -- -D warnings
	bash scripts/planted-unsafe.sh

format: $(VENV)/.deps ## Rewrite Python and Rust sources in the project's style
	$(PY) -m ruff check --fix-only --quiet python tests benches scripts
	$(PY) -m ruff format --quiet python tests benches scripts
	cargo fmt

# The core's tests need no Python, and are built once: the binding is compiled with
# them by `lint-rust` (clippy --all-targets --features python).
test-rust: $(VENV)/.deps ## cargo test of the core (the long death rounds: test-slow)
	cargo test --quiet

test-py: build system-deps lsfd-root ## pytest over tests/ (the long rounds: test-slow)
	$(PY) -m pytest -q -m "not slow" tests

test-slow: build system-deps ## The long rounds make test leaves out: injected deaths, pid reuse, stress (CI)
	cargo test --quiet -- --ignored
	$(PY) -m pytest -q -m slow tests

bench: bench-build ## The benchmarks, with their figures and targets (builds the floor binary)
	$(PY) -m pytest -q benches --benchmark-columns=median,ops --benchmark-sort=name -s

# The manual (docs/, Sphinx with MyST Markdown), warnings as errors, nothing fetched.
docs: build ## Build the manual as HTML into target/docs
	$(PY) -m sphinx -W --keep-going -E -q -b html docs target/docs

# docs/cli-reference.md, written from the parser (a test compares the two).
cli-reference: build ## Rewrite docs/cli-reference.md from the command's parser
	$(PY) -m kcmp_rs.cli._reference > docs/cli-reference.md

# The audits page's picture: pids and temporary names differ on every run.
docs-picture: build system-deps ## Render docs/scan-example.svg from `kcmp-rs scan --example --dot`
	$(PY) -m kcmp_rs scan --example --dot > $(VENV)/scan-example.dot
	dot -Tsvg $(VENV)/scan-example.dot -o docs/scan-example.svg

# Generated from the parser, committed, shipped as the wheel's data (pyproject's
# [tool.maturin] data); tests/test_shell_files.py fails until this is rerun after a
# change to the command's arguments or help.
shell-files: build ## Regenerate the man page and bash/zsh/fish completions under wheel-data/
	$(PY) scripts/gen_shell_files.py

wheel-test: $(VENV)/.deps ## Build the abi3 wheel and sdist; run the suite on the oldest and newest CPython
	bash scripts/wheel-test.sh

# Debian's 6.1 and 5.10 kernels under virtme-ng (QEMU; KVM where it boots): the whole
# test suite in each. KERNELS=bullseye runs the oldest alone.
kernel-test: build system-deps ## The test suite under older real kernels (virtme-ng; KERNELS=bullseye: 5.10 only)
	bash scripts/kernel-test.sh

container-test: build ## Run kcmp_rs in real podman/runc containers (default seccomp profile and others; root)
	bash scripts/container-test.sh

# util-linux 2.41's lsfd (Debian 13), whose ENDPOINTS column Debian 12's 2.38 lacks:
# a debootstrap chroot cached in $${KCMP_RS_CACHE:-~/.cache/kcmp-rs}/lsfd-trixie (about
# 40 s and 130 MB the first time, instant after), run by scripts/lsfd.sh. Needs root.
lsfd-root: ## Build (once, cached) the Debian 13 chroot whose lsfd 2.41 the endpoint tests compare with
	bash scripts/setup-lsfd.sh

clean: ## Remove .venv, target and dist
	rm -rf $(VENV) target dist
