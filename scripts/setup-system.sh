#!/usr/bin/env bash
# The system packages the tests need beyond Rust and Python: Graphviz, whose `dot`
# renders the DOT of `kcmp-rs ... --dot` in tests/test_dot.py and `make docs-picture`;
# zsh and fish, which check the shipped completion scripts (tests/test_shell_files.py);
# man, which renders the shipped man page. Quick when all are there. As root on Debian
# (a developer's machine, CI) it installs what is missing from Debian's packages,
# refreshing the package lists only if the first try fails; anywhere else it says what
# to install and the tests needing it skip.
set -euo pipefail

declare -A PACKAGE=([dot]=graphviz [zsh]=zsh [fish]=fish [man]=man-db)
missing=()
for tool in dot zsh fish man; do
    command -v "$tool" >/dev/null || missing+=("${PACKAGE[$tool]}")
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$EUID" -ne 0 ] || ! command -v apt-get >/dev/null; then
    echo "setup: missing ${missing[*]} (Debian: apt-get install ${missing[*]});" \
        "the tests that need them will skip" >&2
    exit 0
fi

export DEBIAN_FRONTEND=noninteractive
install() { apt-get install -y -q -o Dpkg::Use-Pty=0 "${missing[@]}" >/dev/null; }
if ! install; then
    # Stale or missing package lists (a fresh machine): refresh them once, then retry.
    apt-get update -q >/dev/null
    install
fi
for tool in dot zsh fish man; do
    command -v "$tool" >/dev/null
done
