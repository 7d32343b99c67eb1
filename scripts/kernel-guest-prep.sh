#!/bin/sh
# Run inside a kernel-test guest, as root, before the suite: unpacks into the guest's RAM
# the bundle kernel-test.sh made of what every Python process of the suite reads (the
# interpreter's standard library, the venv's packages, the package and the tests) and
# bind-mounts each copy over its original. The guest sees this machine's root through 9p
# without a cache, so under software emulation a Python start spent seconds on file
# lookups; one bundle read sequentially is fast, and from RAM the lookups are free.
# Anything failing here leaves the originals in place: slower, still correct.
#
# Usage: kernel-guest-prep.sh BUNDLE DIR...  (the DIRs the bundle holds, absolute)
set -u
bundle=$1
shift
ram=/run/kcmp-rs-ram
start=$(date +%s)
mkdir -p "$ram" && mount -t tmpfs -o size=1200M kcmp-rs-ram "$ram" &&
    tar xf "$bundle" -C "$ram" || exit 0
for dir in "$@"; do
    mount --bind "$ram$dir" "$dir" || exit 0
done
echo "kernel-test: the suite's Python files unpacked into RAM in $(($(date +%s) - start)) s"
