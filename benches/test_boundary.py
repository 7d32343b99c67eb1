"""Figure 8: the boundary audit, ``scan(boundary="pid")``, on 200 processes x 100 fds
in two pid namespaces, against the plain ``scan()`` of the same processes. Target: the
audit costs at most 1.2x the plain scan (runs interleaved, medians).

The family is built here, not by ``tests/_family.py``: that builder's zygote reports
the pids its fork() returns, which in a new pid namespace are not the pids this
process sees. Here a leader per side forks the members: on the host side directly,
on the other from inside a new pid namespace (the leader unshares CLONE_NEWPID, and
its first child, the namespace's init, forks the members). Every member holds the
read end of one pipe and one open file, both inherited across both sides (the two
crossings), then its own opens and dup()s of one private file up to 100 fds; it
reports its pid as /proc shows it and lives until the pipe's write end is closed.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Iterator
from functools import partial
from typing import Any

import kcmp_rs
from _benchlib import RESULTS, fmt_time, forked, reap_or_kill, scratch_dir

PROCS_PER_SIDE = 100
FDS = 100
ROUNDS = 5
RATIO = 1.2
CLONE_NEWPID = 0x20000000
_libc = ctypes.CDLL(None, use_errno=True)


def _keep_only(keep: set[int]) -> None:
    for name in os.listdir("/proc/self/fd"):
        if int(name) not in keep:
            with contextlib.suppress(OSError):
                os.close(int(name))


def _member(index: int, directory: str, lifeline: int, shared: int, report: int) -> None:
    _keep_only({lifeline, shared, report})
    private = os.path.join(directory, f"private-{index}")
    held = 3
    last = os.open(private, os.O_RDWR | os.O_CREAT, 0o600)
    while held < FDS:
        last = os.dup(last) if held % 4 == 3 else os.open(private, os.O_RDONLY)
        held += 1
    me = int(os.readlink("/proc/self"))
    os.write(report, f"{me} {lifeline} {shared}\n".encode().rjust(32))
    os.close(report)
    while os.read(lifeline, 1):
        pass


def _leader(first: int, directory: str, lifeline: int, shared: int, report: int) -> None:
    """Forks the side's members, then reaps them."""
    children = []
    for index in range(first, first + PROCS_PER_SIDE):
        children.append(forked(partial(_member, index, directory, lifeline, shared, report)))
    _keep_only(set())
    for pid in children:
        os.waitpid(pid, 0)


def _side(new_pid_ns: bool, first: int, directory: str, fds: tuple[int, int, int]) -> int:
    pid = os.fork()
    if pid != 0:
        return pid
    code = 1
    try:
        if new_pid_ns:
            if _libc.unshare(CLONE_NEWPID) != 0:
                raise OSError(ctypes.get_errno(), "unshare(CLONE_NEWPID)")
            init = os.fork()  # the namespace's first process: the leader inside it
            if init == 0:
                _leader(first, directory, *fds)
                os._exit(0)
            _keep_only(set())
            os.waitpid(init, 0)
        else:
            _leader(first, directory, *fds)
        code = 0
    finally:
        os._exit(code)


@contextlib.contextmanager
def two_sides() -> Iterator[dict[int, tuple[int, int]]]:
    """The family: ``{pid: (lifeline fd, shared file fd)}``, 200 members."""
    directory = tempfile.mkdtemp(prefix="kcmp-boundary-bench-", dir=scratch_dir())
    lifeline_r, lifeline_w = os.pipe()
    report_r, report_w = os.pipe()
    shared = os.open(os.path.join(directory, "shared"), os.O_RDWR | os.O_CREAT, 0o600)
    leaders = []
    try:
        for n, new_ns in enumerate((False, True)):
            fds = (lifeline_r, shared, report_w)
            leaders.append(_side(new_ns, n * PROCS_PER_SIDE, directory, fds))
        os.close(report_w)
        report_w = -1
        with os.fdopen(report_r, "rb", closefd=False) as f:
            lines = f.read().split()
        members = {
            int(p): (int(lf), int(sf)) for p, lf, sf in zip(lines[0::3], lines[1::3], lines[2::3])
        }
        assert len(members) == 2 * PROCS_PER_SIDE, f"{len(members)} members reported"
        yield members
    finally:
        os.close(lifeline_w)  # the members exit, their leaders reap them and exit
        reap_or_kill(leaders)
        for fd in (lifeline_r, report_r, shared, report_w):
            if fd >= 0:
                os.close(fd)
        shutil.rmtree(directory, ignore_errors=True)


def test_boundary_audit(benchmark: Any) -> None:
    benchmark.group = "boundary"
    with two_sides() as members:
        pids = sorted(members)
        sides = {os.readlink(f"/proc/{p}/ns/pid") for p in pids}
        assert len(sides) == 2, sides
        audit = kcmp_rs.scan(pids, boundary="pid")
        crossing = sorted(
            tuple((m.pid, m.fd) for m in d.members) for d in audit.descriptions
            if len(d.boundaries) > 1
        )  # fmt: skip
        expect = sorted(tuple(sorted((p, held[i]) for p, held in members.items())) for i in (0, 1))
        assert crossing == expect
        assert audit.skipped == ()
        plain_times, audit_times = [], []
        for _ in range(ROUNDS):
            t0 = time.perf_counter()
            kcmp_rs.scan(pids)
            plain_times.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            kcmp_rs.scan(pids, boundary="pid")
            audit_times.append(time.perf_counter() - t0)
        benchmark.pedantic(lambda: kcmp_rs.scan(pids, boundary="pid"), rounds=1, iterations=1)
    plain, audited = statistics.median(plain_times), statistics.median(audit_times)
    x = audited / plain
    RESULTS.add(
        "8 boundary audit",
        f"{len(pids)} procs x {FDS} fds, 2 pid namespaces",
        f"{x:.2f}x (audit {fmt_time(audited)}, plain scan {fmt_time(plain)}; medians of {ROUNDS})",
        f"<= {RATIO}x",
        x <= RATIO,
    )
