"""The escape audit's scenarios of `make container-test` (``scenarios.py`` runs them).

- leak: a container given an open directory of the host as fd 3 (``--preserve-fds 1``,
  as runc leaked /sys/fs/cgroup in CVE-2024-21626) and a process of it whose working
  directory is that directory (``cd /proc/self/fd/3``): the host's ``kcmp-rs escapes``
  finds both, high, with the host path, runtime podman and the container's id; the
  container's own audit of its processes finds them too.
- clean: containers with a bind mount, a named volume and a tmpfs, each held open and
  as a working directory; one with ``--pid=host --network=host``; a process entered
  with ``podman exec``: nothing high or medium, at most info (the host's /dev/null that
  conmon gives as a std stream).

Every container is run detached, named with the run's prefix and recorded in
``podman.started``, so ``scenarios.main`` removes it on every path; the named volume
is removed by ``clean`` itself on every path (and by container-test.sh's teardown).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from typing import Any

from scenarios import TIMEOUT, VENV, Podman, Tally, children, nspid

# How long a container's processes get to reach their working directory.
SETTLE = 20.0
LIMITS = ["--ulimit", "nofile=1024:4096", "--ulimit", "nproc=1024:1024"]
SERIOUS = ("high", "medium")


def run_detached(
    podman: Podman, tag: str, extra: Sequence[str], script: str, fd3: int | None = None
) -> tuple[str, str]:
    """Starts ``sh -c SCRIPT`` in a detached container; with ``fd3``, that fd of ours
    becomes the container's fd 3. Returns (name, full id)."""
    name = f"{podman.prefix}-{tag}"
    podman.started.append(name)
    cmd = [*podman.base(), "run", "-d", "--name", name, *LIMITS, *extra]
    cmd += ["--rootfs", podman.rootfs, "/bin/sh", "-c", script]
    keep: tuple[int, ...] = ()
    setup = None
    if fd3 is not None:
        cmd[cmd.index("run") + 1 : cmd.index("run") + 1] = ["--preserve-fds", "1"]
        keep = (3,)

        def setup() -> None:  # after the fork: our fd becomes 3, closed-on-exec cleared
            os.dup2(fd3, 3)

    done = subprocess.run(
        cmd,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
        pass_fds=keep,
        preexec_fn=setup,
    )
    if done.returncode != 0:
        raise RuntimeError(f"podman run {name}: {done.stderr.strip()}")
    return name, done.stdout.strip()


def processes(podman: Podman, name: str, want: int) -> list[int]:
    """The host pids of the container's pid 1 and its children, once ``want`` are up."""
    deadline = time.monotonic() + SETTLE
    while True:
        first = podman.host_pid(name)
        if first == 0:  # the container has exited: say why, not "no /proc/0"
            logs = subprocess.run(
                [*podman.base(), "logs", name], capture_output=True, text=True, timeout=TIMEOUT
            )
            raise RuntimeError(f"{name} exited: {(logs.stdout + logs.stderr).strip()}")
        pids = [first, *children(first)]
        if len(pids) >= want or time.monotonic() > deadline:
            return pids
        time.sleep(0.1)


def exec_pids(podman: Podman, name: str) -> list[int]:
    """The host pids of every process of the container (``podman top``), those entered
    with ``podman exec`` included."""
    top = subprocess.run(
        [*podman.base(), "top", name, "hpid"],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=True,
    )
    return sorted(int(x) for x in top.stdout.split()[1:])


def settled(pid: int, cwd: str) -> bool:
    deadline = time.monotonic() + SETTLE
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            if os.readlink(f"/proc/{pid}/cwd") == cwd:
                return True
        time.sleep(0.1)
    return False


def host_audit(pids: Sequence[int], *flags: str) -> tuple[int, Any, str]:
    """The host's ``kcmp-rs escapes -p PIDS`` (the repo's .venv): status, output (the
    document with -J), stderr."""
    cli = os.path.join(os.path.dirname(sys.executable), "kcmp-rs")
    cmd = [cli, "escapes", "-p", ",".join(map(str, pids)), *flags]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT, check=False)
    doc = json.loads(done.stdout) if "-J" in flags and done.stdout else done.stdout
    return done.returncode, doc, done.stderr


def serious(doc: Any) -> list[dict[str, Any]]:
    return [f for f in doc["findings"] if f["severity"] in SERIOUS]


def report_counts(tag: str, doc: Any, status: int) -> None:
    """The figures of one audit, for the log (the issue asks what real containers show)."""
    infos = sorted({(f["kind"], f["path"]) for f in doc["findings"] if f["severity"] == "info"})
    print(
        f"({tag}: status {status}, {doc['processes_read']} processes, counts {doc['counts']}, "
        f"info {infos}, notes {doc['notes']})",
        flush=True,
    )


# ---- the leak ----


def plant_leak(podman: Podman, tag: str, path: str) -> tuple[str, str]:
    """A container given the host directory ``path`` as fd 3, its child working in it:
    (name, full id). Also the metrics scenario's (``metrics_scenarios.py``)."""
    os.makedirs(path, exist_ok=True)
    opened = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    fd = fcntl.fcntl(opened, fcntl.F_DUPFD_CLOEXEC, 100)  # never 3: dup2 would be a no-op
    os.close(opened)
    try:
        # runc refuses /proc/self/fd/3 as the workdir itself: a shell's cd is what an
        # attacker's process does; the child closes fd 3, so its cwd alone holds the leak.
        script = "(cd /proc/self/fd/3 && exec sleep 600 3<&-) & exec sleep 600"
        return run_detached(podman, tag, [], script, fd3=fd)
    finally:
        os.close(fd)


def leak(t: Tally, podman: Podman, work: str) -> None:
    path = os.path.join(work, "leaked-host-dir")
    name, cid = plant_leak(podman, "leak", path)
    first, *kids = processes(podman, name, 2)
    t.check(
        len(kids) == 1 and settled(kids[0], path),
        "leak: the container's child works in the leaked host directory",
        kids,
    )
    status, doc, err = host_audit([first, *kids], "-J")
    report_counts("leak", doc, status)
    got = sorted(
        (f["pid"], str(f["where"]), f["kind"], f["severity"], f["path"], f["mode"])
        for f in serious(doc)
    )
    want = sorted(
        [
            (first, "3", "outside-namespace", "high", path, "r"),
            *((k, "cwd", "outside-namespace", "high", path, None) for k in kids),
        ]
    )
    t.equal((status, got), (3, want), "leak: host kcmp-rs escapes -J finds fd 3 and the cwd, high")
    t.equal(
        [f["container"] for f in serious(doc)],
        [{"runtime": "podman", "id": cid}] * 2,
        "leak: each finding names runtime podman and the container's id",
    )
    rest = [f for f in doc["findings"] if f["severity"] not in SERIOUS]
    t.check(
        all(f["kind"] == "device" for f in rest),
        "leak: anything else found is a device, info",
        rest,
    )
    status, table, err = host_audit([first, *kids])
    t.check(
        status == 3 and path in table and f"podman:{cid[:12]}" in table and "2 escapes" in table,
        "leak: the table lists both, with the container's short id",
        (status, table, err),
    )
    check_leak_inside(t, podman, name, [first, *kids])


def inside_audit(podman: Podman, name: str, host_pids: Sequence[int]) -> tuple[int, Any, str]:
    """The container's own ``kcmp-rs escapes -J`` of these processes (by their pids in
    the container), under the default seccomp profile: status, document, stderr."""
    pids = ",".join(str(nspid(p)[-1]) for p in host_pids)
    done = podman.exec(name, [f"{VENV}/bin/kcmp-rs", "escapes", "-J", "-p", pids])
    doc = json.loads(done.stdout) if done.stdout else {"findings": []}
    return done.returncode, doc, done.stderr


def check_leak_inside(t: Tally, podman: Podman, name: str, host_pids: Sequence[int]) -> None:
    status, doc, _ = inside_audit(podman, name, host_pids)
    got = sorted((f["pid"], str(f["where"]), f["kind"]) for f in serious(doc))
    first, child = (nspid(p)[-1] for p in host_pids)
    # The host's mounts are in no mountinfo the container can read: detached, seen here.
    want = [(first, "3", "detached"), (child, "cwd", "detached")]
    t.equal(
        (status, got),
        (3, sorted(want)),
        "leak: the container's own kcmp-rs escapes finds fd 3 and the cwd",
    )
    if "counts" in doc:
        report_counts("leak, audited inside", doc, status)


# ---- what must not be found ----


@contextlib.contextmanager
def volume(podman: Podman) -> Iterator[str]:
    name = f"{podman.prefix}-vol"
    base = [*podman.base(), "volume"]
    subprocess.run([*base, "create", name], capture_output=True, timeout=TIMEOUT, check=True)
    try:
        yield name
    finally:
        subprocess.run([*base, "rm", "-f", name], capture_output=True, timeout=TIMEOUT, check=False)


def check_clean(
    t: Tally, tag: str, pids: Sequence[int], inside: tuple[Podman, str] | None = None
) -> None:
    """Nothing high or medium, every process read: from the host, and with ``inside``
    (a container's name) from inside it too."""
    status, doc, err = host_audit(pids, "-J")
    if not t.check(isinstance(doc, dict), f"{tag}: kcmp-rs escapes -J answered", (status, err)):
        return
    report_counts(tag, doc, status)
    t.equal(
        (status, serious(doc), doc["processes_read"], doc["complete"]),
        (0, [], len(pids), True),
        f"{tag}: nothing high or medium among {len(pids)} processes",
    )
    if inside is not None:
        status, doc, err = inside_audit(*inside, pids)
        report_counts(f"{tag}, audited inside", doc, status)
        t.equal(
            (status, doc["findings"], doc["processes_read"]),
            (0, [], len(pids)),
            f"{tag}: the container's own audit finds nothing either",
        )


def clean(t: Tally, podman: Podman, work: str) -> None:
    bound = os.path.join(work, "bound")
    os.makedirs(bound, exist_ok=True)
    with volume(podman) as vol:
        # Each mount held open (written, read) and as a working directory; /vol/f is
        # written before anything runs in the background, or the last exec could race it.
        script = (
            "echo v > /vol/f; (cd /vol && exec sleep 600) & (cd /scratch && exec sleep 600) & "
            "cd /data && exec 3>>/data/log 4</etc/hostname 5>/scratch/s 6</vol/f sleep 600"
        )
        mounts = ["-v", f"{bound}:/data", "-v", f"{vol}:/vol", "--tmpfs", "/scratch"]
        name, _ = run_detached(podman, "mounts", mounts, script)
        pids = processes(podman, name, 3)
        check_clean(t, "bind mount, named volume, tmpfs", pids, (podman, name))
        entered = [*podman.base(), "exec", "-d", name, "sh", "-c", "cd /data && exec sleep 600"]
        subprocess.run(entered, capture_output=True, timeout=TIMEOUT, check=True)
        deadline = time.monotonic() + SETTLE
        while len(found := exec_pids(podman, name)) <= len(pids) and time.monotonic() < deadline:
            time.sleep(0.1)
        extra = sorted(set(found) - set(pids))
        t.check(len(extra) == 1, "podman exec: one process entered", found)
        check_clean(t, "podman exec", extra)
        # Inside, the exec'd process's stdin is a device of no mountinfo read: info.
        status, doc, _ = inside_audit(podman, name, extra)
        report_counts("podman exec, audited inside", doc, status)
        t.equal(serious(doc), [], "podman exec: the container's own audit: nothing high or medium")
        # A device asks nothing kcmp would decide: complete, status 0, without kcmp too.
        t.equal((status, doc["notes"]), (0, []), "podman exec, audited inside: complete")
    script = "(cd /tmp && exec sleep 600) & exec 3</etc/hostname sleep 600"
    name, _ = run_detached(podman, "hostns", ["--pid=host", "--network=host"], script)
    check_clean(t, "--pid=host --network=host", processes(podman, name, 2))
