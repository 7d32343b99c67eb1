#!/usr/bin/env bash
# planted-unsafe: proves the crate's unsafe lints fire, by planting what they forbid.
#
# On a copy of the crate (src/, the Rust bench targets under benches/, Cargo.toml,
# Cargo.lock) in a temporary directory:
#  1. an `unsafe` block in a module other than `sys` must fail `cargo check` with
#     `unsafe_code` (denied at the crate root; only `sys` allows it);
#  2. an `unsafe` block without a `// SAFETY:` comment inside `sys` must fail
#     `cargo clippy -- -D warnings` (as `make lint` runs it) with
#     `undocumented_unsafe_blocks`.
# The unplanted copy must pass both first, so a failure is the plant's.
#
# Offline, with a target directory under ./target (kept between runs, so it is quick).
# The temporary directory is removed on every exit path. Exits non-zero if a planted
# block is NOT caught, or the unplanted copy does not build.
set -uo pipefail

cd "$(dirname "$0")/.." || exit 2
ROOT=$(pwd)
TARGET="$ROOT/target/planted-unsafe"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/kcmp-planted-unsafe.XXXXXX") || exit 2
trap 'rm -rf "$WORK"' EXIT
trap 'exit 130' INT TERM

FAILED=0
say() { echo "planted-unsafe: $*"; }

# A fresh copy of the crate, so each plant starts from the real sources. Cargo.toml
# declares the bench targets, so their sources come too (not benches/' Python files).
fresh_copy() {
    rm -rf "$WORK/crate"
    mkdir -p "$WORK/crate/benches"
    cp -R src Cargo.toml Cargo.lock "$WORK/crate/" || exit 2
    cp benches/*.rs "$WORK/crate/benches/" || exit 2
}

# run NAME ARGS...: `cargo ARGS` in the copy, output to $WORK/NAME.log.
run() {
    local name=$1
    shift
    (cd "$WORK/crate" && CARGO_TARGET_DIR="$TARGET" cargo --offline --quiet "$@") \
        >"$WORK/$name.log" 2>&1
}

# expect_caught NAME LINT ARGS...: `cargo ARGS` must fail, naming LINT.
expect_caught() {
    local name=$1 lint=$2
    shift 2
    if run "$name" "$@"; then
        say "FAIL: $name: '$*' passed although a block was planted"
        FAILED=1
    elif grep -q -- "$lint" "$WORK/$name.log"; then
        say "ok: $name caught by $lint"
    else
        say "FAIL: $name: '$*' failed, but not with $lint:"
        sed 's/^/    /' "$WORK/$name.log"
        FAILED=1
    fi
}

fresh_copy
if ! run baseline clippy --lib -- -D warnings; then
    say "FAIL: the unplanted copy does not pass clippy:"
    sed 's/^/    /' "$WORK/baseline.log"
    exit 1
fi

# 1. unsafe outside sys: the engine must never have it.
cat >>"$WORK/crate/src/engine.rs" <<'EOF'

/// Planted by scripts/planted-unsafe.sh: must be refused.
pub fn planted_unsafe(x: &u8) -> u8 {
    // SAFETY: a valid reference read once; documented, but outside sys.
    unsafe { std::ptr::read(x) }
}
EOF
expect_caught outside-sys "unsafe_code" check --lib

# 2. unsafe inside sys without its SAFETY comment.
fresh_copy
cat >>"$WORK/crate/src/sys.rs" <<'EOF'

/// Planted by scripts/planted-unsafe.sh: must be refused.
pub fn planted_undocumented(x: &u8) -> u8 {
    unsafe { std::ptr::read(x) }
}
EOF
expect_caught undocumented-in-sys "undocumented_unsafe_blocks" clippy --lib -- -D warnings

if [ "$FAILED" -ne 0 ]; then
    say "a planted unsafe block was not caught"
    exit 1
fi
say "both planted blocks caught"
