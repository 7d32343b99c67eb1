#!/usr/bin/env bash
# wheel-test: what a user gets from `pip install`, tested as a user gets it.
#
#  1. Builds the abi3 wheel (`maturin build --release`, manylinux-tagged and checked by
#     maturin's auditwheel against pyproject's `compatibility`) and the sdist.
#  2. For the oldest (>= 3.9) and the newest CPython in ~/.pyenv/versions (else python3):
#     a fresh venv, the wheel plus pytest, hypothesis, numpy, mypy and prometheus-client
#     (test tools only), then the whole test suite run from a temporary copy of tests/
#     (the repo's python/ is never importable there),
#     with pytest's config still taken from the repo's pyproject.toml. Also checks that
#     kcmp_rs is imported from site-packages and that `kcmp-rs --version` is its version.
#  3. Builds a wheel from the sdist alone (`pip wheel`, isolated build, empty directory),
#     installs it and checks it answers kcmp_rs.same_file.
#  The wheel and the sdist must hold the man page and the bash, zsh and fish completions
#  (wheel-data/), and pip must install them under the venv's share/ (steps 2 and 3).
#
# Ends with "wheel-test: N passed, M failed" (N and M count test-suite tests and this
# script's own checks); exits non-zero if anything failed.
#
# Environment:
#   WHEEL_TEST_PYTHONS  interpreters to use instead of the oldest/newest found
#   WHEEL_TEST_ZIG=0    link with the host toolchain instead of `--zig`. The host's glibc
#                       is newer than manylinux2014's 2.17 (Rust's std and the libc crate
#                       then pull in symbols up to GLIBC_2.34), so only in a manylinux
#                       container will auditwheel accept that build.
#   WHEEL_TEST_KEEP=1   keep the temporary directory (its path is printed)
set -uo pipefail

cd "$(dirname "$0")/.." || exit 2
ROOT=$(pwd)
# Make exports the dev venv for cargo and maturin; nothing of it may leak in here.
unset VIRTUAL_ENV PYO3_PYTHON PYTHONPATH PYTHONHOME PYTHONSTARTUP CARGO_TARGET_DIR
PATH=$(echo "$PATH" | tr ':' '\n' | grep -vxF "$ROOT/.venv/bin" | paste -sd: -)
export PIP_DISABLE_PIP_VERSION_CHECK=1

WORK=$(mktemp -d "${TMPDIR:-/tmp}/kcmp-wheel-test.XXXXXX")
if [ "${WHEEL_TEST_KEEP:-0}" = 1 ]; then
    echo "wheel-test: keeping $WORK"
else
    trap 'rm -rf "$WORK"' EXIT
fi
DIST=$WORK/dist
START=$SECONDS

# shellcheck source=scripts/_tally.sh
source "$ROOT/scripts/_tally.sh"
SKIPPED=0
die() {
    fail "$*"
    finish
}
finish() {
    section "summary ($((SECONDS - START)) s)"
    for f in "${FAILURES[@]+"${FAILURES[@]}"}"; do
        echo "failed: $f"
    done
    local skipped=""
    [ "$SKIPPED" -gt 0 ] && skipped=", $SKIPPED skipped"
    echo "wheel-test: $PASSED passed, $FAILED failed$skipped"
    [ "$FAILED" -eq 0 ]
    exit $?
}

# ---- interpreters ----

# "IMPL ABIFLAGS X.Y.Z PATH" for an interpreter; runs on Python 2 as well.
PROBE='import platform, sys
sys.stdout.write("%s %s %d.%d.%d %s\n" % ((platform.python_implementation(),
    getattr(sys, "abiflags", "") or "-") + tuple(sys.version_info[:3]) + (sys.executable,)))'

pick_pythons() {
    if [ -n "${WHEEL_TEST_PYTHONS:-}" ]; then
        echo "$WHEEL_TEST_PYTHONS" | tr ' ' '\n'
        return
    fi
    local found
    # CPython >= 3.9 with the GIL (abi3 wheels do not load in free-threaded builds).
    found=$(for py in "${PYENV_ROOT:-$HOME/.pyenv}"/versions/*/bin/python; do
        [ -x "$py" ] && "$py" -c "$PROBE" 2>/dev/null
    done | awk '$1 == "CPython" && $2 !~ /t/ {
                    split($3, v, "."); if (v[1] == 3 && v[2] >= 9 || v[1] > 3) print $3, $4 }' |
        sort -V)
    if [ -z "$found" ]; then
        command -v python3
        return
    fi
    echo "$found" | head -n1 | cut -d' ' -f2
    echo "$found" | tail -n1 | cut -d' ' -f2
}

section "interpreters"
mapfile -t PYTHONS < <(pick_pythons | awk 'NF && !seen[$0]++')
[ "${#PYTHONS[@]}" -gt 0 ] || die "no Python interpreter found"
for py in "${PYTHONS[@]}"; do
    "$py" -c 'import sys; assert sys.version_info >= (3, 9), sys.version' ||
        die "$py is older than 3.9"
    echo "$("$py" -c 'import sys; print(sys.version.split()[0])')  $py"
done
NEWEST=${PYTHONS[${#PYTHONS[@]} - 1]}
OLDEST=${PYTHONS[0]}

# ---- build ----

section "build tools (maturin$([ "${WHEEL_TEST_ZIG:-1}" = 0 ] || echo ", ziglang"))"
TOOLS=$WORK/tools
"$NEWEST" -m venv "$TOOLS" || die "cannot create the tools venv"
tool_reqs=("maturin>=1.9.4,<2")
[ "${WHEEL_TEST_ZIG:-1}" = 0 ] || tool_reqs+=(ziglang)
"$TOOLS/bin/python" -m pip install -q "${tool_reqs[@]}" || die "cannot install ${tool_reqs[*]}"
"$TOOLS/bin/maturin" --version

section "wheel: maturin build --release"
zig=()
[ "${WHEEL_TEST_ZIG:-1}" = 0 ] || zig=(--zig)
# Its own target dir: --zig links differently from `make build`, and keeping it makes
# the next run incremental.
PATH="$TOOLS/bin:$PATH" "$TOOLS/bin/maturin" build --release "${zig[@]}" --out "$DIST" \
    --interpreter "$NEWEST" --target-dir "$ROOT/target/wheel-test" ||
    die "maturin build (manylinux policy from pyproject.toml; see WHEEL_TEST_ZIG above)"
mapfile -t WHEELS < <(ls "$DIST"/*.whl 2>/dev/null)
[ "${#WHEELS[@]}" -eq 1 ] || die "expected one wheel in $DIST, found ${#WHEELS[@]}"
WHEEL=${WHEELS[0]}
name=$(basename "$WHEEL")
echo "$name"
case "$name" in
*-cp39-abi3-manylinux*"$(uname -m)".whl) ok "wheel is abi3 (cp39) and manylinux-tagged" ;;
*) fail "wheel $name is not a cp39-abi3 manylinux wheel" ;;
esac
if "$NEWEST" - "$WHEEL" <<'EOF'; then
import sys, zipfile
names = set(zipfile.ZipFile(sys.argv[1]).namelist())
wanted = {"kcmp_rs/__init__.py", "kcmp_rs/_native.abi3.so", "kcmp_rs/_native.pyi",
          "kcmp_rs/py.typed", "kcmp_rs/cli/__init__.py", "kcmp_rs/cli/_main.py",
          "kcmp_rs/_scan.py", "kcmp_rs/_example.py", "_kcmp_rs_cli/__init__.py"}
# The tests' family lives in tests/; a kcmp_rs/scan.py would shadow kcmp_rs.scan().
unwanted = {"kcmp_rs/_family.py", "kcmp_rs/scan.py"}
missing = sorted(wanted - names)
# The licence the metadata declares (MIT), as its text, in the dist-info.
if not any(n.endswith(".dist-info/licenses/LICENSE") for n in names):
    missing.append("<name>.dist-info/licenses/LICENSE")
extra = sorted(unwanted & names)
# The benchmark replay is a bench binary of its own (benches/syscall_floor.rs); the
# extension must not grow the binding it once had.
if "kcmp_rs/_native.abi3.so" in names:
    native = zipfile.ZipFile(sys.argv[1]).read("kcmp_rs/_native.abi3.so")
    if b"bench_syscall_floor" in native:
        extra.append("bench_syscall_floor in _native.abi3.so")
sys.exit("missing from the wheel: %s; not for the wheel: %s" % (missing, extra)
         if missing or extra else 0)
EOF
    ok "wheel holds the native module, its stub, py.typed, the scan, the CLI and LICENSE, no test or bench code"
else
    fail "wheel contents"
fi

# The man page and the completions (wheel-data/, pyproject's [tool.maturin] data): the
# wheel's <name>.data/data/, which pip installs under the prefix. Listed first: `grep -q`
# stops reading at its match, and under pipefail the lister it cut off would fail.
SHELL_FILES=(share/man/man1/kcmp-rs.1 share/bash-completion/completions/kcmp-rs
    share/zsh/site-functions/_kcmp-rs share/fish/vendor_completions.d/kcmp-rs.fish)
# Its names as `unzip -Z1` lists them, read by the interpreter at hand (unzip may be absent).
WHEEL_NAMES=$("$NEWEST" -c 'import sys, zipfile; print(*zipfile.ZipFile(sys.argv[1]).namelist(), sep="\n")' "$WHEEL")
for f in "${SHELL_FILES[@]}"; do
    if grep -qx "[^/]*\.data/data/${f//./\\.}" <<<"$WHEEL_NAMES"; then
        ok "wheel holds $f as data"
    else
        fail "wheel has no <name>.data/data/$f"
    fi
done

section "sdist: maturin sdist"
"$TOOLS/bin/maturin" sdist --out "$DIST" || die "maturin sdist"
mapfile -t SDISTS < <(ls "$DIST"/*.tar.gz 2>/dev/null)
[ "${#SDISTS[@]}" -eq 1 ] || die "expected one sdist in $DIST, found ${#SDISTS[@]}"
SDIST=${SDISTS[0]}
echo "$(basename "$SDIST")"
# Listed first: `grep -q` stops reading at its match, and under pipefail the tar it
# cut off would fail the pipeline.
SDIST_NAMES=$(tar tzf "$SDIST")
if grep -qx '[^/]*/LICENSE' <<<"$SDIST_NAMES"; then
    ok "sdist holds LICENSE"
else
    fail "sdist has no LICENSE"
fi
for f in "${SHELL_FILES[@]}"; do
    if grep -qx "[^/]*/wheel-data/data/${f//./\\.}" <<<"$SDIST_NAMES"; then
        ok "sdist holds wheel-data/data/$f"
    else
        fail "sdist has no wheel-data/data/$f"
    fi
done
# The deployment files (pyproject's include, format sdist): in the sdist, never the wheel.
DEPLOY_FILES=(systemd/kcmp-rs-metrics.service systemd/kcmp-rs-metrics.timer
    prometheus/kcmp_rs-rules.yml prometheus/kcmp_rs-rules.test.yml)
for f in "${DEPLOY_FILES[@]}"; do
    if grep -qx "[^/]*/deploy/${f//./\\.}" <<<"$SDIST_NAMES"; then
        ok "sdist holds deploy/$f"
    else
        fail "sdist has no deploy/$f"
    fi
done
if grep -q "deploy/" <<<"$WHEEL_NAMES"; then
    fail "the wheel holds deploy/ files"
else
    ok "the wheel holds no deploy/ file"
fi

# ---- the installed wheel under each interpreter ----

# Prints where kcmp_rs and its native module come from; fails unless both are in this
# venv's site-packages.
CHECK_LOCATION='import sysconfig, kcmp_rs, kcmp_rs._native as n
site = sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]
print(kcmp_rs.__file__)
print(n.__file__)
assert kcmp_rs.__file__.startswith(site) and n.__file__.startswith(site), "not site-packages"'

# kcmp-rs --version must name kcmp_rs.__version__.
check_cli_version() {
    local venv=$1 cli version
    cli=$("$venv/bin/kcmp-rs" --version 2>&1) || {
        fail "$2: kcmp-rs --version exited non-zero: $cli"
        return
    }
    version=$("$venv/bin/python" -c 'import kcmp_rs; print(kcmp_rs.__version__)')
    if [ "$(echo "$cli" | awk '{print $NF}')" = "$version" ]; then
        ok "$2: kcmp-rs --version says $version ($cli)"
    else
        fail "$2: kcmp-rs --version says '$cli', kcmp_rs.__version__ is $version"
    fi
}

# Adds the counts of pytest's closing line to the totals.
count_pytest() {
    local line=$1 n word
    for word in passed failed 'errors?' skipped; do
        n=$(echo "$line" | grep -oE "[0-9]+ $word\b" | head -n1 | cut -d' ' -f1)
        n=${n:-0}
        case $word in
        passed) PASSED=$((PASSED + n)) ;;
        skipped) SKIPPED=$((SKIPPED + n)) ;;
        *) FAILED=$((FAILED + n)) ;;
        esac
    done
}

for py in "${PYTHONS[@]}"; do
    ver=$("$py" -c 'import sys; print("%d.%d.%d" % sys.version_info[:3])')
    section "Python $ver: install the wheel into a fresh venv"
    venv=$WORK/venv-$ver
    run=$WORK/run-$ver
    if ! "$py" -m venv "$venv" ||
        ! "$venv/bin/python" -m pip install -q "$WHEEL" pytest hypothesis numpy mypy prometheus-client; then
        fail "Python $ver: venv or install"
        continue
    fi
    "$venv/bin/python" -m pip list 2>/dev/null | grep -iE '^(kcmp-rs|pytest|hypothesis|numpy|mypy|prometheus-client) '
    # The tests and the project's metadata (pytest's config in pyproject.toml; the
    # version in Cargo.toml, which a test compares with kcmp_rs.__version__; the README,
    # whose API tour a test runs against the installed wheel; the Makefile, whose targets
    # the docs' synopses name), no code.
    mkdir -p "$run"
    cp -r "$ROOT/tests" "$run/tests"
    cp "$ROOT/pyproject.toml" "$ROOT/Cargo.toml" "$ROOT/README.md" "$ROOT/Makefile" "$run/"
    # lsfd 2.41's runner, for the endpoint tests (the chroot is make lsfd-root's cache).
    mkdir -p "$run/scripts" && cp "$ROOT/scripts/lsfd.sh" "$run/scripts/"
    cp -r "$ROOT/docs" "$run/docs"  # the manual: its code blocks run, its picture is compared
    cp -r "$ROOT/deploy" "$run/deploy"  # the shipped units and alerting rules the tests check
    rm -rf "$run/tests/__pycache__"
    if (cd "$run" && "$venv/bin/python" -c "$CHECK_LOCATION"); then
        ok "Python $ver: kcmp_rs imported from site-packages"
    else
        fail "Python $ver: kcmp_rs not imported from the installed wheel"
    fi
    check_cli_version "$venv" "Python $ver"
    # Where pip put the wheel's data: the venv's share/, as committed.
    for f in "${SHELL_FILES[@]}"; do
        if cmp -s "$venv/$f" "$ROOT/wheel-data/data/$f"; then
            ok "Python $ver: pip installed $f"
        else
            fail "Python $ver: $venv/$f missing or not the committed file"
        fi
    done

    section "Python $ver: test suite against the installed wheel"
    log=$WORK/pytest-$ver.log
    # From the copy, so neither the repo's python/ nor its tests/ are on sys.path; the
    # config (filterwarnings = error, xfail_strict, ...) is the repo's pyproject.toml.
    # test_layout.py reads the source tree (sizes, imports) and test_shell_files.py the
    # committed wheel-data/ and its generator (development tools), which the copy leaves
    # out on purpose; `make test` runs them, and the installed copies are checked above.
    # On the newest Python the suite runs with its children's pids below its own: the
    # next pid is set just under pid_max, so they wrap within the first tests. Results
    # come in (pid, fd) order, and a test that assumed a child's pid is the larger
    # fails here rather than on the day a machine's pids wrap.
    if [ "$py" = "$NEWEST" ] && [ -w /proc/sys/kernel/ns_last_pid ]; then
        echo $(($(cat /proc/sys/kernel/pid_max) - 20)) >/proc/sys/kernel/ns_last_pid
        echo "Python $ver: children's pids wrap below the test process's"
    fi
    (cd "$run" && "$venv/bin/python" -m pytest -p no:cacheprovider -q \
        -c "$run/pyproject.toml" --rootdir "$run" --ignore=tests/test_layout.py \
        --ignore=tests/test_shell_files.py tests 2>&1) |
        tee "$log"
    status=${PIPESTATUS[0]}
    summary=$(grep -E '^=*.*[0-9]+ (passed|failed|errors?|skipped|xfailed|deselected)' "$log" | tail -n1)
    if [ -z "$summary" ]; then
        fail "Python $ver: pytest printed no summary (exit $status)"
        continue
    fi
    count_pytest "$summary"
    if [ "$status" -ne 0 ] && ! echo "$summary" | grep -qE '[0-9]+ (failed|errors?)'; then
        fail "Python $ver: pytest exited $status"
    fi
done

# ---- a wheel from the sdist alone ----

section "sdist: pip wheel in an empty directory (isolated build), with Python $OLDEST"
sdist_dir=$WORK/from-sdist
sdist_venv=$WORK/venv-sdist
mkdir -p "$sdist_dir/out"
# --no-cache-dir: never a wheel pip built from an earlier sdist.
if (cd "$sdist_dir" && "$OLDEST" -m venv "$sdist_venv" &&
    "$sdist_venv/bin/python" -m pip wheel -q --no-deps --no-cache-dir -w out "$SDIST"); then
    built=$(ls "$sdist_dir"/out/*.whl)
    ok "wheel built from the sdist: $(basename "$built")"
    if "$sdist_venv/bin/python" -m pip install -q "$built" &&
        (cd "$sdist_dir" && "$sdist_venv/bin/python" -c "$CHECK_LOCATION" &&
            "$sdist_venv/bin/python" - <<'EOF'); then
import os, kcmp_rs
me = os.getpid()
r, w = os.pipe()
d = os.dup(r)
assert kcmp_rs.same_file(me, r, me, d) is True
assert kcmp_rs.same_file(me, r, me, w) is False
assert kcmp_rs.classify_fds(me, [r, w, d]) == [(r, d), (w,)]
print("same_file and classify_fds answer correctly")
EOF
        ok "the sdist's wheel imports from site-packages and answers same_file"
        check_cli_version "$sdist_venv" "sdist wheel"
        # The sdist carries wheel-data/, so its wheel installs the same files.
        for f in "${SHELL_FILES[@]}"; do
            if cmp -s "$sdist_venv/$f" "$ROOT/wheel-data/data/$f"; then
                ok "sdist wheel: pip installed $f"
            else
                fail "sdist wheel: $sdist_venv/$f missing or not the committed file"
            fi
        done
    else
        fail "the wheel built from the sdist does not work"
    fi
else
    fail "pip wheel of the sdist"
fi

finish
