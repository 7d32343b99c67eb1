#!/usr/bin/env bash
# Debian's Prometheus and node_exporter, which the end-to-end tests of `kcmp-rs metrics`
# start themselves on loopback ports (tests/_prom.py, tests/test_prom_e2e.py, the metrics
# scenario of `make container-test`). Quick when all are there. As root on Debian it
# installs what is missing, refreshing the package lists only if the first try fails, as
# scripts/setup-system.sh does; anywhere else it says what to install and those tests skip.
#
# The packages' maintainer scripts would start both as services (and leave them running
# under a CI job or a developer's desktop): while they install, a policy-rc.d that answers
# 101 ("action forbidden") is put in place when the machine has none, and removed on every
# path. Whatever they started anyway is stopped, and the script fails if it cannot be.
set -euo pipefail

declare -A PACKAGE=(
    [prometheus]=prometheus
    [promtool]=prometheus
    [prometheus-node-exporter]=prometheus-node-exporter
)
TOOLS=(prometheus promtool prometheus-node-exporter)
missing=()
for tool in "${TOOLS[@]}"; do
    command -v "$tool" >/dev/null && continue
    [[ " ${missing[*]} " == *" ${PACKAGE[$tool]} "* ]] || missing+=("${PACKAGE[$tool]}")
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$EUID" -ne 0 ] || ! command -v apt-get >/dev/null; then
    echo "setup: missing ${missing[*]} (Debian: apt-get install --no-install-recommends" \
        "${missing[*]});" "the end-to-end tests of kcmp-rs metrics will skip" >&2
    exit 0
fi

# The services run as the packages' own user: the daemons of that user are the packages',
# never a test's (tests run them as root) nor anyone else's.
service_pids() {
    id prometheus >/dev/null 2>&1 || return 0
    { pgrep -u prometheus -x prometheus || true; pgrep -u prometheus -f prometheus-node-exporter ||
        true; } | sort -u
}
mapfile -t BEFORE < <(service_pids)

POLICY=/usr/sbin/policy-rc.d
placed=0
remove_policy() {
    if [ "$placed" -eq 1 ]; then rm -f "$POLICY"; fi
}
trap remove_policy EXIT
trap 'exit 130' INT TERM HUP  # through the EXIT trap: the policy goes on a signal too
if [ ! -e "$POLICY" ]; then
    printf '#!/bin/sh\n# scripts/setup-prometheus.sh (kcmp_rs): no service starts now\nexit 101\n' \
        >"$POLICY"
    chmod 0755 "$POLICY"
    placed=1
fi

export DEBIAN_FRONTEND=noninteractive
# Without the recommended extra collectors (their own timers, smartmontools, ...): the
# tests need the two binaries and promtool only.
install() {
    apt-get install -y -q --no-install-recommends -o Dpkg::Use-Pty=0 "${missing[@]}" >/dev/null
}
if ! install; then
    # Stale or missing package lists (a fresh machine): refresh them once, then retry.
    apt-get update -q >/dev/null
    install
fi
remove_policy
placed=0

# A machine whose own policy-rc.d allows starts (or a systemd that ignores it) may have
# started them: stop what the install started, and nothing that ran before it.
if [ -d /run/systemd/system ]; then
    for unit in prometheus prometheus-node-exporter; do
        if systemctl is-active --quiet "$unit"; then
            echo "setup: stopping $unit, which its package started" >&2
            systemctl stop "$unit"
        fi
    done
fi
started=()
for pid in $(service_pids); do
    [[ " ${BEFORE[*]} " == *" $pid "* ]] || started+=("$pid")
done
if [ ${#started[@]} -gt 0 ]; then
    echo "setup: stopping ${started[*]}, started by the packages' install" >&2
    kill -TERM "${started[@]}" 2>/dev/null || true
    alive() {
        local pid
        for pid in "${started[@]}"; do kill -0 "$pid" 2>/dev/null && return 0; done
        return 1
    }
    for _ in $(seq 50); do
        alive || break
        sleep 0.1
    done
    if alive; then
        echo "setup: ${started[*]} still running 5 s after SIGTERM" >&2
        exit 1
    fi
fi

for tool in "${TOOLS[@]}"; do
    command -v "$tool" >/dev/null
done
