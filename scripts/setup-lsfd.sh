#!/usr/bin/env bash
# setup-lsfd: a minimal Debian 13 (trixie) chroot whose lsfd (util-linux 2.41) has the
# ENDPOINTS column that Debian 12's lsfd 2.38 lacks; the endpoint tests compare our
# answers with it, run against this host's processes by scripts/lsfd.sh.
#
# Built once with `debootstrap --variant=minbase --include=util-linux-extra trixie`
# (trixie's lsfd is in util-linux-extra) from the Debian mirror this machine's apt uses,
# and cached in ${KCMP_RS_CACHE:-$HOME/.cache/kcmp-rs}/lsfd-trixie. The build goes into
# a temporary directory beside it, which is renamed only once complete and stamped
# (lsfd-trixie/.kcmp-rs-lsfd-version holds `lsfd --version`): an interrupted build never
# leaves a chroot that looks ready. debootstrap runs in a private mount namespace, so
# whatever it mounts in the target goes away with it, even when it is killed.
#
# Quick and silent but for one line when the cache is there. Needs root (debootstrap,
# chroot); installs debootstrap with apt-get when missing.
#
# Environment:
#   KCMP_RS_CACHE        where the chroot is cached (default ~/.cache/kcmp-rs)
#   KCMP_RS_MIRROR       the Debian mirror (default: the one of this machine's apt sources)
set -euo pipefail

CACHE=${KCMP_RS_CACHE:-$HOME/.cache/kcmp-rs}
DEST=$CACHE/lsfd-trixie
STAMP=.kcmp-rs-lsfd-version
SUITE=trixie
PACKAGE=util-linux-extra

say() { echo "setup-lsfd: $*"; }
die() {
    echo "setup-lsfd: $*" >&2
    exit 1
}

if [ -s "$DEST/$STAMP" ]; then
    say "cached: $DEST ($(cat "$DEST/$STAMP"))"
    exit 0
fi
[ "$EUID" -eq 0 ] || die "building the chroot needs root (debootstrap, chroot)"

# The URI of this machine's Debian archive: the entry, in one-line or deb822 form, whose
# suite is the host's own codename (so not -security, -updates or a third-party source).
host_mirror() {
    local codename files=()
    codename=$(. /etc/os-release && echo "${VERSION_CODENAME:-}")
    [ -n "$codename" ] || return 0
    [ -f /etc/apt/sources.list ] && files+=(/etc/apt/sources.list)
    for f in /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
        [ -f "$f" ] && files+=("$f")
    done
    [ "${#files[@]}" -gt 0 ] || return 0
    awk -v want="$codename" '
        function flush(i, j) {
            if (types ~ /(^| )deb( |$)/)
                for (i = 1; i <= nu; i++)
                    for (j = 1; j <= ns; j++)
                        if (s[j] == want) { print u[i]; found = 1; exit }
            types = ""; nu = 0; ns = 0
        }
        FNR == 1 { flush() }
        FILENAME ~ /\.sources$/ {
            if ($0 ~ /^[ \t]*$/) { flush(); next }
            if ($0 ~ /^#/) next
            f = tolower($1); v = substr($0, index($0, ":") + 1)
            if (f == "types:") types = v
            if (f == "uris:") nu = split(v, u, " ")
            if (f == "suites:") ns = split(v, s, " ")
            next
        }
        $1 == "deb" {
            k = 2
            if ($k ~ /^\[/) { while ($k !~ /\]$/) k++; k++ }
            if ($(k + 1) == want) { print $k; found = 1; exit }
        }
        END { if (!found) flush() }
    ' "${files[@]}" | head -n 1
}

MIRROR=${KCMP_RS_MIRROR:-$(host_mirror)}
if [ -z "$MIRROR" ]; then
    MIRROR=http://deb.debian.org/debian
    say "no Debian entry in this machine's apt sources: using $MIRROR" >&2
fi

if ! command -v debootstrap >/dev/null; then
    export DEBIAN_FRONTEND=noninteractive
    install() { apt-get install -y -q -o Dpkg::Use-Pty=0 debootstrap >/dev/null; }
    if ! install; then
        # Stale or missing package lists (a fresh machine): refresh them once, then retry.
        apt-get update -q >/dev/null
        install
    fi
fi

mkdir -p "$CACHE"
# One build at a time; a second caller waits, then finds the cache ready.
exec 9>"$CACHE/.lsfd-trixie.lock"
flock 9
if [ -s "$DEST/$STAMP" ]; then
    say "cached: $DEST ($(cat "$DEST/$STAMP"))"
    exit 0
fi

# Without the stamp, whatever lies at $DEST or in a temporary directory of a build that
# was killed is a build that never finished (the lock says none is running now).
for old in "$DEST" "$DEST".tmp.*; do
    [ -e "$old" ] || continue
    if grep -qF " $old" /proc/self/mountinfo; then
        die "$old has mounts in it: unmount them, then run again"
    fi
    rm -rf --one-file-system "$old"
done

TMP=$(mktemp -d "$DEST.tmp.XXXXXX")
LOG=$TMP.log
BUILDER=""
cleanup() {
    if [ -n "$BUILDER" ]; then
        # debootstrap and what it runs (dpkg in the target) are a session of their own.
        kill -TERM -- "-$BUILDER" 2>/dev/null || true
        for _ in $(seq 100); do
            kill -0 -- "-$BUILDER" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL -- "-$BUILDER" 2>/dev/null || true
    fi
    rm -rf --one-file-system "$TMP"
    rm -f "$LOG"
}
trap cleanup EXIT
trap 'echo "setup-lsfd: interrupted" >&2; exit 130' INT TERM
chmod 0755 "$TMP"

t0=$SECONDS
# In the background, so that a signal reaches the trap at once, not when debootstrap ends.
setsid unshare --mount --propagation private -- \
    debootstrap --variant=minbase --include="$PACKAGE" "$SUITE" "$TMP" "$MIRROR" \
    >"$LOG" 2>&1 </dev/null &
BUILDER=$!
status=0
wait "$BUILDER" || status=$?
BUILDER=""
if [ "$status" -ne 0 ]; then
    tail -n 20 "$LOG" >&2
    die "debootstrap $SUITE from $MIRROR failed (exit $status)"
fi
version=$(chroot "$TMP" lsfd --version) || die "no lsfd in the new chroot"
case $version in
*" 2.4"[1-9]* | *" 2."[5-9]* | *" "[3-9].*) ;;
*) die "the chroot's lsfd is too old for ENDPOINTS: $version" ;;
esac
# The chroot needs no package lists nor downloaded packages: 40 MB fewer.
rm -rf "${TMP:?}"/var/cache/apt/archives/*.deb "${TMP:?}"/var/lib/apt/lists/*_Packages
echo "$version" >"$TMP/$STAMP"
mv -T "$TMP" "$DEST"
trap - EXIT
rm -f "$LOG"
say "built $DEST in $((SECONDS - t0)) s from $MIRROR ($version, $(du -sh "$DEST" | cut -f1))"
