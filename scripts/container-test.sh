#!/usr/bin/env bash
# container-test: kcmp_rs in real containers (podman + runc), under podman's real default
# seccomp profile, with --cap-add SYS_PTRACE and with seccomp=unconfined.
#
#  1. Installs podman, runc and debootstrap when missing (apt-get; needs root, as CI is),
#     and Prometheus and node_exporter (scripts/setup-prometheus.sh).
#  2. Builds a wheel of the working tree (`maturin build --release --compatibility linux`:
#     for this host's glibc only, which is the rootfs's too: both are Debian bookworm).
#  3. Prepares the rootfs once (`debootstrap --variant=minbase` bookworm with python3 and
#     python3-venv), cached in ${KCMP_RS_CACHE:-$HOME/.cache/kcmp-rs}/rootfs-bookworm:
#     built in a temporary directory beside it and renamed only when complete.
#  4. Recreates the venv /opt/kcmp-rs-venv inside it with the wheel, and copies
#     tests/container/inside.py to /opt/kcmp-rs-ct; nothing else of the rootfs changes
#     (the containers get a tmpfs on /tmp).
#  5. Runs tests/container/scenarios.py with the repo's .venv (`make build` made it),
#     which starts the containers and checks every answer against the host's kcmp.
#
# Ends with "container-test: N passed, M failed"; exits non-zero if anything failed or
# could not run. Every container and volume it starts is named $PREFIX-* and removed on
# every path, with the temporary directory; it then checks that no container, no volume
# and no mount is left.
#
# Environment:
#   KCMP_RS_CACHE             where the rootfs is cached (default ~/.cache/kcmp-rs)
#   CONTAINER_TEST_KEEP=1     keep the temporary directory (its path is printed)
set -uo pipefail

cd "$(dirname "$0")/.." || exit 2
ROOT=$(pwd)
START=$SECONDS
CACHE=${KCMP_RS_CACHE:-$HOME/.cache/kcmp-rs}
ROOTFS=$CACHE/rootfs-bookworm
PREFIX=kcmp-ct-$$-$RANDOM
PY=$ROOT/.venv/bin/python
PODMAN=(podman --runtime /usr/sbin/runc --cgroup-manager cgroupfs)
export PIP_DISABLE_PIP_VERSION_CHECK=1

WORK=$(mktemp -d "${TMPDIR:-/tmp}/kcmp-container-test.XXXXXX")
ROOTFS_TMP=""
DRIVER=""
TAIL=""

# shellcheck source=scripts/_tally.sh
source "$ROOT/scripts/_tally.sh"

our_containers() {
    "${PODMAN[@]}" ps -a --filter "name=^$PREFIX-" --format '{{.Names}}' 2>/dev/null
}

our_volumes() {
    "${PODMAN[@]}" volume ls --filter "name=^$PREFIX-" --format '{{.Name}}' 2>/dev/null
}

# Mounts whose source or target lies in our temporary directory or the rootfs.
our_mounts() {
    findmnt -rn -o TARGET,SOURCE | grep -F -e "$WORK" -e "$ROOTFS" -e "${ROOTFS_TMP:-$WORK}"
}

teardown() {
    local name
    # The driver removes its containers and ends its helper itself on SIGTERM.
    if [ -n "$DRIVER" ]; then
        kill -TERM "$DRIVER" 2>/dev/null
        wait "$DRIVER" 2>/dev/null
    fi
    [ -n "$TAIL" ] && kill "$TAIL" 2>/dev/null
    for name in $(our_containers); do
        "${PODMAN[@]}" rm -f -t 0 "$name" >/dev/null 2>&1
    done
    for name in $(our_volumes); do
        "${PODMAN[@]}" volume rm -f "$name" >/dev/null 2>&1
    done
    our_mounts | awk '{print $1}' | sort -r | while read -r target; do
        umount -l "$target" 2>/dev/null
    done
    [ -n "$ROOTFS_TMP" ] && rm -rf "$ROOTFS_TMP"
    if [ "${CONTAINER_TEST_KEEP:-0}" = 1 ]; then
        echo "container-test: keeping $WORK"
    else
        rm -rf "$WORK"
    fi
}
trap teardown EXIT
trap 'echo "container-test: interrupted"; exit 130' INT TERM

finish() {
    section "summary ($((SECONDS - START)) s)"
    for f in "${FAILURES[@]+"${FAILURES[@]}"}"; do
        echo "failed: $f"
    done
    echo "container-test: $PASSED passed, $FAILED failed"
    [ "$FAILED" -eq 0 ]
    exit $?
}
die() {
    fail "$*"
    finish
}

# ---- tools ----

section "tools: podman, runc, debootstrap"
missing=()
for tool in podman:podman runc:/usr/sbin/runc debootstrap:/usr/sbin/debootstrap; do
    command -v "${tool#*:}" >/dev/null || missing+=("${tool%%:*}")
done
if [ "${#missing[@]}" -gt 0 ]; then
    [ "$(id -u)" -eq 0 ] || die "${missing[*]} missing, and installing needs root"
    echo "installing ${missing[*]}"
    { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
        podman runc debootstrap; } >"$WORK/apt.log" 2>&1 ||
        { tail -n 20 "$WORK/apt.log"; die "apt-get install ${missing[*]}"; }
fi
[ "$(id -u)" -eq 0 ] || die "rootful podman (the containers' root is the host's root): run as root"
podman --version
# The metrics scenario's node_exporter and Prometheus (their services left stopped).
bash "$ROOT/scripts/setup-prometheus.sh" || die "scripts/setup-prometheus.sh"
[ -x "$PY" ] || die "$PY missing: run through \`make container-test\` (it builds .venv)"

# ---- wheel ----

section "wheel: maturin build --release --compatibility linux"
DIST=$WORK/dist
# The same target dir and interpreter as `make build`, so cargo reuses its release build.
"$ROOT/.venv/bin/maturin" build --release --quiet --compatibility linux --out "$DIST" \
    --interpreter "$PY" || die "maturin build"
mapfile -t WHEELS < <(ls "$DIST"/*.whl 2>/dev/null)
[ "${#WHEELS[@]}" -eq 1 ] || die "expected one wheel in $DIST, found ${#WHEELS[@]}"
ok "wheel $(basename "${WHEELS[0]}")"

# ---- rootfs ----

section "rootfs: $ROOTFS"
if [ -d "$ROOTFS" ]; then
    echo "cached"
else
    mkdir -p "$CACHE" || die "cannot create $CACHE"
    ROOTFS_TMP=$(mktemp -d "$ROOTFS.tmp.XXXXXX") || die "cannot create a directory in $CACHE"
    # mktemp makes it 0700, and it becomes the containers' /: non-root users need 0755.
    chmod 0755 "$ROOTFS_TMP" || die "chmod $ROOTFS_TMP"
    t0=$SECONDS
    debootstrap --variant=minbase --include=python3,python3-venv bookworm "$ROOTFS_TMP" \
        >"$WORK/debootstrap.log" 2>&1 ||
        { tail -n 20 "$WORK/debootstrap.log"; die "debootstrap bookworm"; }
    mv -T "$ROOTFS_TMP" "$ROOTFS" || die "cannot move the rootfs into place"
    ROOTFS_TMP=""
    echo "built in $((SECONDS - t0)) s, $(du -sh "$ROOTFS" | cut -f1)"
fi
ok "rootfs ready: $("$ROOTFS/usr/bin/python3" --version 2>/dev/null || echo "no python3")"

section "venv inside the rootfs: /opt/kcmp-rs-venv"
rm -rf "$ROOTFS/opt/kcmp-rs-venv" "$ROOTFS/opt/kcmp-rs-ct"
{ mkdir -p "$ROOTFS/opt/kcmp-rs-ct" && cp tests/container/inside.py "$ROOTFS/opt/kcmp-rs-ct/"; } ||
    die "cannot copy inside.py into the rootfs"
"${PODMAN[@]}" run --rm --name "$PREFIX-setup" --ulimit nofile=1024:4096 \
    --ulimit nproc=1024:1024 --network none -v "$DIST:/dist:ro" --rootfs "$ROOTFS" \
    /bin/sh -c 'python3 -m venv /opt/kcmp-rs-venv &&
        /opt/kcmp-rs-venv/bin/pip install -q --no-index /dist/*.whl &&
        /opt/kcmp-rs-venv/bin/kcmp-rs --version' || die "venv with the wheel in the rootfs"
ok "the wheel is installed in the rootfs's venv"

# ---- the scenarios ----

section "scenarios"
# In the background, so that a signal reaches the trap at once, not when it ends. The
# log exists before tail opens it, whichever of the two starts first.
: >"$WORK/scenarios.log"
"$PY" tests/container/scenarios.py --rootfs "$ROOTFS" --prefix "$PREFIX" --work "$WORK" \
    >"$WORK/scenarios.log" 2>&1 &
DRIVER=$!
tail -n +1 -f --pid="$DRIVER" "$WORK/scenarios.log" &
TAIL=$!
wait "$DRIVER"
status=$?
DRIVER=""
wait "$TAIL"
TAIL=""
summary=$(grep -E '^scenarios: [0-9]+ passed, [0-9]+ failed$' "$WORK/scenarios.log")
if [ -z "$summary" ]; then
    fail "scenarios.py printed no summary (exit $status)"
else
    n=$(echo "$summary" | awk '{print $2}')
    m=$(echo "$summary" | awk '{print $4}')
    PASSED=$((PASSED + n))
    FAILED=$((FAILED + m))
    mapfile -t -O "${#FAILURES[@]}" FAILURES < <(sed -n 's/^FAIL: //p' "$WORK/scenarios.log")
    [ "$status" -eq 0 ] || [ "$m" -gt 0 ] || fail "scenarios.py exited $status"
fi

section "teardown"
left=$(our_containers)
if [ -z "$left" ]; then ok "no container of ours is left"; else fail "containers left: $left"; fi
left=$(our_volumes)
if [ -z "$left" ]; then ok "no volume of ours is left"; else fail "volumes left: $left"; fi
mounts=$(our_mounts)
if [ -z "$mounts" ]; then ok "no mount of ours is left"; else fail "mounts left: $mounts"; fi

finish
