#!/usr/bin/env bash
# The system package the tests need beyond Rust and Python: Graphviz, whose `dot`
# renders the DOT of `kcmp-rs ... --dot` in tests/test_dot.py and in `make docs`.
# Quick when `dot` is there already. As root on Debian (a developer's machine, CI) it
# installs Debian's `graphviz`, refreshing the package lists only if the first try
# fails; anywhere else it says what to install and the rendering tests skip.
set -euo pipefail

command -v dot >/dev/null && exit 0

if [ "$EUID" -ne 0 ] || ! command -v apt-get >/dev/null; then
    echo "setup: Graphviz's dot is missing (Debian: apt-get install graphviz);" \
        "the tests that render DOT will skip" >&2
    exit 0
fi

export DEBIAN_FRONTEND=noninteractive
install() { apt-get install -y -q -o Dpkg::Use-Pty=0 graphviz >/dev/null; }
if ! install; then
    # Stale or missing package lists (a fresh machine): refresh them once, then retry.
    apt-get update -q >/dev/null
    install
fi
command -v dot >/dev/null
