"""A pure-Python ctypes reference for kcmp(2), written as a user without kcmp_rs would.

It exists to check the native core against (tests) and to measure it against
(benchmarks), so it is deliberately plain: one ``syscall`` through ctypes per
comparison, ``OSError(errno, os.strerror(errno))`` on failure, no argument validation
and no diagnosis of which side was at fault.

Beware what the raw call does with bad input: the kernel truncates ``idx1``/``idx2``
to 32 bits (``2**32 + 3`` compares as fd 3), and ``KcmpType.EPOLL_TFD`` reads ``idx2``
as a pointer to a ``struct kcmp_epoll_slot`` (an integer there gives EFAULT or reads
this process's memory). The native ``kcmp_rs`` functions refuse both.

This module never imports ``kcmp_rs._native``: only the enums of ``kcmp_rs._errors``.
"""

from __future__ import annotations

import ctypes
import errno
import functools
import os
import platform
from collections.abc import Iterable
from typing import SupportsIndex

from kcmp_rs._errors import KcmpType, Order

__all__ = [
    "SYS_KCMP",
    "classify_fds",
    "classify_fds_planned",
    "kcmp",
    "partition_pairwise",
    "same_file",
]

#: ``__NR_kcmp`` by ``platform.machine()``; None where this module does not know it.
SYS_KCMP: int | None = {"x86_64": 312, "aarch64": 272}.get(platform.machine())

# ``long syscall(long number, ...)``: declared with the five kcmp arguments so ctypes
# converts each to the register width the kernel reads.
_libc = ctypes.CDLL(None, use_errno=True)
_syscall = _libc.syscall
_syscall.restype = ctypes.c_long
_syscall.argtypes = [
    ctypes.c_long,  # number
    ctypes.c_long,  # pid1
    ctypes.c_long,  # pid2
    ctypes.c_long,  # type
    ctypes.c_ulong,  # idx1
    ctypes.c_ulong,  # idx2
]


def kcmp(
    pid1: SupportsIndex,
    pid2: SupportsIndex,
    type: KcmpType | SupportsIndex,
    idx1: SupportsIndex = 0,
    idx2: SupportsIndex = 0,
) -> Order:
    """``kcmp(pid1, pid2, type, idx1, idx2)`` as the kernel answers it.

    The arguments go to ctypes as they are, so integer-likes (``__index__``) work as
    ints do. Returns the kernel's order of the two objects as an ``Order``; raises
    ``OSError(errno, os.strerror(errno))`` (CPython picks the subclass from errno) when
    the call fails, and ValueError if the kernel returns a value that is not an order.
    """
    if SYS_KCMP is None:
        raise OSError(
            errno.ENOSYS,
            f"{os.strerror(errno.ENOSYS)}: no kcmp syscall number known for {platform.machine()}",
        )
    r = int(_syscall(SYS_KCMP, pid1, pid2, int(type), idx1, idx2))
    if r == -1:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))
    return Order(r)


def same_file(
    pid1: SupportsIndex, fd1: SupportsIndex, pid2: SupportsIndex, fd2: SupportsIndex
) -> bool:
    """Whether fd1 of pid1 and fd2 of pid2 refer to one open file description."""
    return kcmp(pid1, pid2, KcmpType.FILE, fd1, fd2) is Order.EQUAL


def _compare(pid: int, fd1: int, fd2: int) -> int:
    """A ``cmp``-style comparison of two fds of ``pid`` in the kernel's order of files.

    -1, 0 or 1 for LESS, EQUAL, GREATER. ``Order.UNORDERED`` (reserved, never returned
    by current kernels) cannot be sorted: ValueError.
    """
    order = kcmp(pid, pid, KcmpType.FILE, fd1, fd2)
    if order is Order.EQUAL:
        return 0
    if order is Order.LESS:
        return -1
    if order is Order.GREATER:
        return 1
    raise ValueError(
        f"kcmp returned {order!r} for fds {fd1} and {fd2} of process {pid}: cannot sort"
    )


def _normalise(groups: Iterable[Iterable[int]]) -> list[tuple[int, ...]]:
    """Each group ascending, the groups ordered by their smallest fd."""
    return sorted((tuple(sorted(g)) for g in groups), key=lambda g: g[0])


def classify_fds(pid: int, fds: Iterable[int]) -> list[tuple[int, ...]]:
    """Groups the fds of ``pid`` by open file description, by sorting in kcmp order.

    The distinct fds are sorted with kcmp as the comparison (the kernel's order is total
    and consistent across calls), then equal neighbours are joined. Returns the groups,
    each ascending, ordered by their smallest fd.
    """

    def cmp(a: int, b: int) -> int:
        return _compare(pid, a, b)

    ordered = sorted(set(fds), key=functools.cmp_to_key(cmp))
    groups: list[list[int]] = []
    for fd in ordered:
        if groups and _compare(pid, groups[-1][-1], fd) == 0:
            groups[-1].append(fd)
        else:
            groups.append([fd])
    return _normalise(groups)


def _file_key(pid: int, fd: int) -> tuple[int, int]:
    """The (st_dev, st_ino) of the file behind fd ``fd`` of process ``pid``."""
    st = os.fstat(fd) if pid == os.getpid() else os.stat(f"/proc/{pid}/fd/{fd}")
    return (st.st_dev, st.st_ino)


def classify_fds_planned(pid: int, fds: Iterable[int]) -> list[tuple[int, ...]]:
    """Groups the fds of ``pid`` like ``classify_fds``, with the native engine's plan.

    Fds are first bucketed by the (st_dev, st_ino) of their file (``os.fstat`` for
    this process, ``os.stat`` of ``/proc/PID/fd/N`` otherwise): one description has
    one inode, so only fds sharing a bucket can be equal. Within a bucket each fd is
    binary-searched among the bucket's representatives, kept sorted in kcmp order:
    found means it joins that representative's group, not found inserts it as a new
    representative. Each fd costs about log2(k + 1) kcmp calls for k descriptions in
    its bucket. Same output as ``classify_fds``.
    """
    buckets: dict[tuple[int, int], list[int]] = {}
    for fd in sorted(set(fds)):
        buckets.setdefault(_file_key(pid, fd), []).append(fd)

    groups: list[list[int]] = []
    for members in buckets.values():
        reps: list[int] = []  # one fd per description, ascending in kcmp order
        classes: list[list[int]] = []  # classes[i]: the fds equal to reps[i]
        for fd in members:
            lo, hi = 0, len(reps)
            found = -1
            while lo < hi:
                mid = (lo + hi) // 2
                c = _compare(pid, fd, reps[mid])
                if c == 0:
                    found = mid
                    break
                if c < 0:
                    hi = mid
                else:
                    lo = mid + 1
            if found >= 0:
                classes[found].append(fd)
            else:
                reps.insert(lo, fd)
                classes.insert(lo, [fd])
        groups.extend(classes)
    return _normalise(groups)


def partition_pairwise(pid: int, fds: Iterable[int]) -> list[tuple[int, ...]]:
    """Groups the fds of ``pid`` by brute force: ``same_file`` on every pair.

    O(n**2) kcmp calls, no reliance on the order: the truth the other two are checked
    against. Equal pairs are joined (union-find). Same output as ``classify_fds``.
    """
    unique = sorted(set(fds))
    parent = {fd: fd for fd in unique}

    def root(fd: int) -> int:
        while parent[fd] != fd:
            parent[fd] = parent[parent[fd]]
            fd = parent[fd]
        return fd

    for i, a in enumerate(unique):
        for b in unique[i + 1 :]:
            if same_file(pid, a, pid, b):
                parent[root(b)] = root(a)

    groups: dict[int, list[int]] = {}
    for fd in unique:
        groups.setdefault(root(fd), []).append(fd)
    return _normalise(groups.values())
