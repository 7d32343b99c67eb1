#!/usr/bin/env bash
# kernel-test: the test suite under older real kernels, booted with virtme-ng.
#
# Each kernel is Debian's own package (bookworm's 6.1, bullseye's 5.10), downloaded with a
# private APT configuration (the host's sources are never touched) and unpacked with
# dpkg-deb into the cache. virtme-ng boots it with this machine's root filesystem shared
# read-only, and the guest runs `pytest -m 'not userland' tests` (all but what is the same
# on every kernel) with the .venv `make build` made. KVM is used where a short probe
# boots with it; otherwise QEMU emulates the CPU in software.
#
# The kernels boot side by side; each guest's output is printed when all are done, then,
# per kernel: the release, tests run and passed, and the time. Exits non-zero if any
# kernel failed a test or could not boot.
#
# Environment:
#   KERNELS          suites to boot, oldest last (default "bookworm bullseye")
#   KERNEL_TEST_ARGS extra pytest arguments (e.g. "-k fallback -x")
#   KCMP_RS_CACHE    cache directory (default ~/.cache/kcmp-rs)
#   KERNEL_TIMEOUT   seconds per kernel (default 3600)
#   KVM_PROBE_TIMEOUT seconds the KVM probe may take to boot (default 45)
set -uo pipefail

cd "$(dirname "$0")/.." || exit 2
ROOT=$(pwd)
CACHE=${KCMP_RS_CACHE:-$HOME/.cache/kcmp-rs}
K=$CACHE/kernels
KERNELS=${KERNELS:-bookworm bullseye}
TIMEOUT=${KERNEL_TIMEOUT:-3600}
export DEBIAN_FRONTEND=noninteractive

[ -x "$ROOT/.venv/bin/python" ] || { echo "kernel-test: run 'make build' first" >&2; exit 2; }
[ "$(id -u)" = 0 ] || { echo "kernel-test: needs root (apt-get, the guest's tests)" >&2; exit 2; }

# Host tools: QEMU; depmod and busybox build vng's initramfs; udevd gives the guest its
# virtio ports, without which vng loses the command's output and status.
if ! { command -v qemu-system-x86_64 && command -v depmod && command -v busybox &&
    [ -x /lib/systemd/systemd-udevd ]; } >/dev/null; then
    timeout 300 apt-get update -q || exit 2
    timeout 900 apt-get install -y -q qemu-system-x86 kmod busybox-static udev || exit 2
fi
VNG_VENV=$CACHE/vng-venv
if [ ! -x "$VNG_VENV/bin/vng" ]; then
    python3 -m venv "$VNG_VENV" &&
        timeout 600 "$VNG_VENV/bin/pip" install -q 'virtme-ng==1.42' || exit 2
fi

# One private apt state per suite: its sources, lists and cache live under $K/apt.
apt_conf() {
    local suite=$1 dir=$K/apt/$1
    mkdir -p "$dir"/{lists/partial,cache/archives/partial,sources} "$K/debs"
    touch "$dir/status"
    cat >"$dir/sources/$suite.sources" <<SRC
Types: deb
URIs: http://deb.debian.org/debian
Suites: $suite $suite-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://deb.debian.org/debian-security
Suites: $suite-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
    cat >"$dir/apt.conf" <<CONF
Dir::Etc::SourceList "/dev/null";
Dir::Etc::SourceParts "$dir/sources";
Dir::State::Lists "$dir/lists";
Dir::Cache "$dir/cache";
Dir::State::status "$dir/status";
APT::Sandbox::User "root";
CONF
    echo "$dir/apt.conf"
}

# The unpacked kernel of a suite's linux-image-amd64, downloaded once.
fetch_kernel() {
    local suite=$1 conf pkg dir
    conf=$(apt_conf "$suite")
    if ! compgen -G "$K/apt/$suite/lists/*_${suite}_InRelease" >/dev/null; then
        APT_CONFIG=$conf timeout 300 apt-get update -q >&2 || return 1
    fi
    pkg=$(APT_CONFIG=$conf apt-cache depends linux-image-amd64 |
        awk '/Depends: linux-image-/ {print $2; exit}')
    [ -n "$pkg" ] || { echo "kernel-test: no linux-image in $suite" >&2; return 1; }
    dir=$K/unpacked/$pkg
    if [ ! -d "$dir/boot" ]; then
        (cd "$K/debs" && APT_CONFIG=$conf timeout 600 apt-get download -q "$pkg") >&2 || return 1
        rm -rf "$dir.partial" && mkdir -p "$dir.partial" &&
            dpkg-deb -x "$K/debs/${pkg}"_*.deb "$dir.partial" && mv "$dir.partial" "$dir" || return 1
    fi
    echo "$dir"
}

# vng runs helpers of its own from its venv.
export PATH="$VNG_VENV/bin:$PATH"

# KVM only where it boots a kernel quickly (a few seconds); a hang or an abort means
# software emulation. Probed once, with the first kernel: on this machine kind the kvm
# device comes from a paravirtual module and every stock kernel hangs on it.
ACCEL=unprobed
accel_for() {
    local vmlinuz=$1
    if [ "$ACCEL" = unprobed ]; then
        ACCEL=--disable-kvm
        if [ -c /dev/kvm ] &&
            timeout "${KVM_PROBE_TIMEOUT:-45}" vng --memory 1G --run "$vmlinuz" \
                --exec 'echo kvm-boots' 2>&1 | cat | grep -q kvm-boots; then
            ACCEL=""
        fi
    fi
}

# The guests' logs and the bundle below; the guests see this machine's /tmp.
LOGS=$(mktemp -d /tmp/kcmp-kernel-test.XXXXXX)
trap 'kill $(jobs -p) 2>/dev/null; wait; rm -rf "$LOGS"' EXIT
trap 'exit 130' INT TERM

# Bytecode compiled here, once (no guest compiles the package at each `python -m
# kcmp_rs`), then one bundle of what the suite's Python processes read: the standard
# library, the venv's packages, the package and the tests. The guest unpacks it into
# its RAM (kernel-guest-prep.sh): read file by file through 9p, a Python start under
# emulation took seconds.
"$ROOT/.venv/bin/python" -m compileall -q -j 0 "$ROOT/python" "$ROOT/tests" >/dev/null || exit 2
STDLIB=$("$ROOT/.venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["stdlib"])')
BUNDLED=("$STDLIB" "$(echo "$ROOT"/.venv/lib/python3.*/site-packages)" "$ROOT/python" "$ROOT/tests")
BUNDLE=$LOGS/bundle.tar
tar cf "$BUNDLE" -C / --exclude="${STDLIB#/}/site-packages" --exclude="${STDLIB#/}/test" \
    --exclude="${STDLIB#/}/config-*" --exclude="${STDLIB#/}/idlelib" \
    --exclude="${STDLIB#/}/tkinter" --exclude="${STDLIB#/}/ensurepip" \
    "${BUNDLED[@]#/}" || exit 2

# The guest's hard fd limit is 4096; tests open more. It sees this machine's root
# read-only: pytest's cache is off and Hypothesis keeps its examples in /tmp. Tests marked
# userland (pyproject's markers: the same on every kernel) run on the host alone.
GUEST_CMD="sh '$ROOT/scripts/kernel-guest-prep.sh' '$BUNDLE' ${BUNDLED[*]};
ulimit -Hn 1048576; ulimit -n 1048576; cd '$ROOT' &&
PYTHONDONTWRITEBYTECODE=1 HYPOTHESIS_STORAGE_DIRECTORY=/tmp/kcmp-rs-hypothesis \
.venv/bin/python -m pytest -q -p no:cacheprovider \
-m 'not userland' tests ${KERNEL_TEST_ARGS:-}; echo KCMP_RS_GUEST_STATUS=\$?"


# The kernels boot side by side: a guest runs the suite on about one core (the tests are
# mostly one process at a time), so on two cores two guests take little longer than one.

STATUS=0
SUMMARY=()
RUNS=()
for suite in $KERNELS; do
    if ! dir=$(fetch_kernel "$suite"); then
        SUMMARY+=("$suite: could not fetch its kernel")
        STATUS=1
        continue
    fi
    vmlinuz=$(ls "$dir"/boot/vmlinuz-* | head -1)
    accel_for "$vmlinuz"
    echo "kernel-test: booting ${vmlinuz##*/vmlinuz-} ($suite) ${ACCEL:-with KVM}"
    (
        start=$SECONDS
        # A pipe, not a file: QEMU reopens its stdout with O_TRUNC.
        timeout "$TIMEOUT" vng $ACCEL --memory 3G --run "$vmlinuz" \
            --exec "$GUEST_CMD" 2>&1 | cat >"$LOGS/$suite.log"
        echo $((SECONDS - start)) >"$LOGS/$suite.took"
    ) &
    RUNS+=("$suite:$vmlinuz:$ACCEL")
done
wait

for run in "${RUNS[@]}"; do
    IFS=: read -r suite vmlinuz accel <<<"$run"
    release=${vmlinuz##*/vmlinuz-}
    log=$LOGS/$suite.log
    echo
    echo "==== kernel $release ($suite) ${accel:-with KVM} ===="
    cat "$log"
    line=$(grep -E '^[0-9]+ (passed|failed)|^=* ?[0-9]+ (passed|failed)' "$log" | tail -1)
    guest=$(sed -n 's/.*KCMP_RS_GUEST_STATUS=\([0-9]*\).*/\1/p' "$log" | tail -1)
    if [ "$guest" != 0 ]; then
        STATUS=1
    fi
    took=$(cat "$LOGS/$suite.took" 2>/dev/null || echo "?")
    SUMMARY+=("$release ($suite): ${line:-no pytest summary (guest status ${guest:-lost})} [${took}s${accel:+, software emulation}]")
done

echo
echo "==== kernel-test ===="
printf '%s\n' "${SUMMARY[@]}"
exit $STATUS
