#!/usr/bin/env bash
# lsfd.sh ARGS...: util-linux 2.41's lsfd (the Debian 13 chroot of scripts/setup-lsfd.sh)
# run against this host's processes, with ARGS as given; its exit status is lsfd's.
#
# lsfd runs chrooted in a private mount namespace of its own (unshare --mount), where the
# host's /proc is bind-mounted read-only at the chroot's /proc: those mounts exist only
# in that namespace and vanish with it when lsfd exits, so nothing is ever left mounted
# on the host, even when lsfd is killed. /proc is all lsfd reads: the sockets' endpoints
# come from netlink sock_diag (a socket, no path), the pty's from /proc/PID/fdinfo.
# Needs root (unshare, chroot) and the chroot: exit 2 with a message without them.
#
# Environment:
#   KCMP_RS_CACHE   where setup-lsfd.sh cached the chroot (default ~/.cache/kcmp-rs)
set -euo pipefail

ROOT=${KCMP_RS_CACHE:-$HOME/.cache/kcmp-rs}/lsfd-trixie
if [ ! -s "$ROOT/.kcmp-rs-lsfd-version" ]; then
    echo "lsfd.sh: no lsfd chroot at $ROOT: run scripts/setup-lsfd.sh (make lsfd-root)" >&2
    exit 2
fi
if [ "$EUID" -ne 0 ]; then
    echo "lsfd.sh: needs root (unshare --mount, chroot)" >&2
    exit 2
fi

# shellcheck disable=SC2016 # expanded by the inner sh
exec unshare --mount --propagation private -- sh -c '
    root=$1
    shift
    mount --bind /proc "$root/proc" &&
        mount -o remount,bind,ro "$root/proc" &&
        exec chroot "$root" /usr/bin/lsfd "$@"
    exit 2
' lsfd.sh "$ROOT" "$@"
