"""The metrics scenario of `make container-test` (``scenarios.py`` runs it): the escape
of ``escape_scenarios.leak`` planted again (a host directory given to a podman container
as fd 3, and a process of it working in it), then ``kcmp-rs metrics -p PIDS --textfile
DIR`` over the container's processes, Debian's node_exporter reading DIR and Prometheus
scraping it with the shipped alerting rules (``tests/_prom.py`` starts both on loopback
ports). Over Prometheus's HTTP API: ``kcmp_rs_escapes`` for the container, high, equal to
the findings of the host's ``kcmp-rs escapes``; and the ``KcmpRsEscape`` alert firing
for it.

node_exporter and Prometheus are stopped and their directories removed on every path;
the container is recorded in ``podman.started``, so ``scenarios.main`` removes it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Sequence

from _prom import NODE_EXPORTER, PROMETHEUS, Sample, Server, node_exporter, prometheus, query
from escape_scenarios import host_audit, plant_leak, processes, settled
from scenarios import TIMEOUT, Podman, Tally


def plant(podman: Podman, work: str) -> tuple[str, list[int], str]:
    """escape_scenarios.leak's container: (its full id, its host pids, the host path)."""
    path = os.path.join(work, "metrics-host-dir")
    name, cid = plant_leak(podman, "metrics", path)
    return cid, processes(podman, name, 2), path


def collect(pids: Sequence[int], directory: str) -> subprocess.CompletedProcess[str]:
    """The host's ``kcmp-rs metrics`` (the repo's .venv, beside this interpreter)."""
    cli = os.path.join(os.path.dirname(sys.executable), "kcmp-rs")
    cmd = [cli, "metrics", "-p", ",".join(map(str, pids)), "--textfile", directory]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT, check=False)


def samples(prom: Server, expr: str, until: Callable[[list[Sample]], bool]) -> list[Sample]:
    """``query``'s answer once ``until`` holds; its last answer when it never does (the
    check that follows then fails with it)."""
    try:
        return query(prom, expr, until)
    except AssertionError as e:
        print(f"    {e}", flush=True)
        return query(prom, expr, lambda _: True)


def escape_alert(t: Tally, podman: Podman, work: str) -> None:
    missing = [b for b in (NODE_EXPORTER, PROMETHEUS) if shutil.which(b) is None]
    if not t.check(not missing, "metrics: node_exporter and Prometheus are installed", missing):
        return
    cid, pids, path = plant(podman, work)
    t.check(settled(pids[-1], path), "metrics: the container's child works in the host directory")
    status, doc, err = host_audit(pids, "-J")
    high = [f for f in doc["findings"] if f["severity"] == "high"] if doc else []
    t.check(status == 3 and len(high) == 2, "metrics: kcmp-rs escapes finds fd 3 and the cwd", err)
    with node_exporter() as exporter:
        done = collect(pids, exporter.textfiles)
        t.equal(
            (done.returncode, done.stdout, done.stderr),
            (0, "", ""),
            "metrics: kcmp-rs metrics --textfile writes the container's figures",
        )
        with prometheus({"node": [exporter.server.address]}) as prom:
            wanted = {"runtime": "podman", "container": cid, "severity": "high"}
            got = samples(
                prom,
                'kcmp_rs_escapes{severity="high",runtime="podman"}',
                lambda s: any(wanted.items() <= x.labels.items() for x in s),
            )
            t.equal(
                [x.value for x in got if wanted.items() <= x.labels.items()],
                [float(len(high))],
                "metrics: Prometheus has kcmp_rs_escapes high for the container, as escapes finds",
            )
            firing = samples(
                prom,
                'ALERTS{alertname="KcmpRsEscape",alertstate="firing"}',
                lambda s: any(x.labels.get("container") == cid for x in s),
            )
            t.equal(
                [(x.labels["runtime"], x.labels["severity"]) for x in firing],
                [("podman", "critical")],
                "metrics: the shipped KcmpRsEscape alert fires for the container",
            )
