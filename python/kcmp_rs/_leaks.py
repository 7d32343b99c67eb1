"""Fd-leak checking for test suites: what a block of code left open in this process,
each fd told exactly as a new open file description or another fd of one that was
open before, and the children it started that still hold this process's descriptions.

``FdLeakCheck`` is the context manager any runner can use; ``kcmp_rs.pytest_plugin``
wraps it for pytest (``pytest --fd-leaks``).

What it holds across the block is data, never an fd: the fd numbers with the
``(st_dev, st_ino)`` behind each (one listing of /proc/self/fd and one fstat per fd)
and the ``(pid, start time)`` of every descendant. Everything costly (kcmp, readlink,
reading children) runs after the block and only for what is new. It looks at this
process and its descendants (``/proc/PID/task/*/children``, recursively), never at
any other process.
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from types import TracebackType

from kcmp_rs import _native
from kcmp_rs._proc import command_names, shown_one
from kcmp_rs._results import ChildHolder, Description, FdLeaks, LeakedFd, Member, Ref

__all__ = ["FdLeakCheck"]

Inode = tuple[int, int]


# ---- reading this process and its descendants ----


@dataclass(frozen=True)
class _Process:
    pid: int
    ppid: int
    start: int  # clock ticks after boot: tells a pid reused by another process apart
    zombie: bool


@dataclass(frozen=True)
class _Snapshot:
    fds: dict[int, Inode]
    descendants: dict[int, _Process]


def _native_descendants(pid: int) -> list[_Process]:
    return [_Process(*p) for p in _native.descendants(pid)]


def _snapshot() -> _Snapshot:
    """This process's fds with the inode behind each (an fd closed meanwhile by another
    thread is left out; the listing's own directory fd never shows) and its
    descendants, children of children included: one native call."""
    fds, known = _native.leak_snapshot()
    return _Snapshot(
        {fd: (dev, ino) for fd, dev, ino in fds},
        {p[0]: _Process(*p) for p in known},
    )


# ---- comparing ----


def _describe(me: int, fd: int) -> tuple[str, str, str] | None:
    """(target, mode, type) of one of our fds; None if it was closed meanwhile."""
    described = shown_one(me, fd)
    return None if described[0] == "?" and described[1] == "?" else described


def _leaked_fds(
    me: int, before: dict[int, Inode], now: dict[int, Inode]
) -> tuple[tuple[LeakedFd, ...], list[Ref]]:
    # Only an old fd still on its old file can stand for a description open before:
    # a number closed and reused inside the block names a new description.
    kept = {fd: key for fd, key in now.items() if before.get(fd) == key}
    new = sorted(fd for fd in now if fd not in kept)
    if not new:
        return (), []
    on_inode: dict[Inode, list[int]] = defaultdict(list)
    for fd in sorted(now):
        on_inode[now[fd]].append(fd)
    # Descriptions are compared only among fds on one inode, and only where a new fd
    # has company there: a new pipe or socket costs no kcmp at all.
    refs = {(me, other) for fd in new if len(on_inode[now[fd]]) > 1 for other in on_inode[now[fd]]}
    groups, undecided = _native.classify_files_partial(sorted(refs), missing="skip")
    undecided_fds = {fd for _, fd in undecided}
    dup_of: dict[int, int] = {}
    same_as: dict[int, int] = {}
    for group in groups:
        olds = [fd for _, fd in group if fd in kept]
        news = [fd for _, fd in group if fd not in kept]
        for fd in news:
            if olds:
                dup_of[fd] = olds[0]
            elif fd != news[0]:
                same_as[fd] = news[0]
    leaked = []
    for fd in new:
        described = _describe(me, fd)
        if described is None:
            continue
        leaked.append(
            LeakedFd(
                fd,
                *described,
                dup_of=dup_of.get(fd),
                same_as=same_as.get(fd),
                reused=fd in before,
                undecided=fd in undecided_fds,
            )
        )
    return tuple(leaked), list(undecided)


def _child_fds(started: Iterable[_Process]) -> list[Ref]:
    refs: list[Ref] = []
    for child in started:
        try:
            refs.extend((child.pid, fd) for fd in _native.open_fds(child.pid))
        except OSError:
            continue  # exited meanwhile, or exec'd something this process may not read
    return refs


def _holder(
    me: int, child: _Process, groups: list[tuple[Ref, ...]], names: dict[int, str]
) -> ChildHolder | None:
    command, mine = names[child.pid], names[me]
    descriptions = []
    for group in groups:
        ours = [fd for p, fd in group if p == me]
        theirs = [fd for p, fd in group if p == child.pid]
        if not ours or not theirs:
            continue
        described = _describe(me, ours[0])
        if described is None:
            continue
        target, mode, kind = described
        members = tuple(Member(me, fd, mine) for fd in ours) + tuple(
            Member(child.pid, fd, command) for fd in theirs
        )
        descriptions.append(Description(target, mode, members, kind))
    if not descriptions:
        return None
    return ChildHolder(child.pid, child.ppid, command, tuple(descriptions))


def _child_holders(
    me: int, before: dict[int, _Process], now: _Snapshot
) -> tuple[tuple[ChildHolder, ...], list[Ref]]:
    started = [
        p
        for p in now.descendants.values()
        if not p.zombie and (p.pid not in before or before[p.pid].start != p.start)
    ]
    if not started:
        return (), []
    refs = [(me, fd) for fd in sorted(now.fds)] + _child_fds(started)
    # The children are this process's own: copying one of their fds for a moment
    # (pidfd_getfd) is how the answer stays exact where kcmp is blocked.
    groups, undecided = _native.classify_files_partial(refs, missing="skip", allow_pidfd_getfd=True)
    holders = []
    still = {p.pid: p for p in _native_descendants(me)}
    names = command_names([me, *still])
    for child in started:
        again = still.get(child.pid)
        if again is None or again.start != child.start or again.zombie:
            continue  # exited during the check: it holds nothing any more
        holder = _holder(me, child, groups, names)
        if holder is not None:
            holders.append(holder)
    return tuple(holders), list(undecided)


def _compare(before: _Snapshot) -> FdLeaks:
    me = os.getpid()
    now = _snapshot()
    leaked, undecided = _leaked_fds(me, before.fds, now.fds)
    children, undecided_children = _child_holders(me, before.descendants, now)
    return FdLeaks(me, leaked, children, tuple(sorted(set(undecided + undecided_children))))


# ---- the context manager ----


class FdLeakCheck:
    """Checks a block of code for fd leaks: ``with FdLeakCheck() as check: ...``, then
    ``check.leaks`` (an ``FdLeaks``) says what the block left behind.

    Before the block it records this process's fd numbers with the inode behind each
    and its descendants (pid and start time): data only, no fd is held across the
    block. After it: every fd open now that was not, or whose number now names
    another file (closed and reused), is leaked; each is told apart by open file
    description (kcmp, only among fds on one inode) as a new description or a dup of
    an fd open before and still on its file. Then every descendant started during
    the block and still alive is compared with this process's fds; those holding any
    of its descriptions are listed. The fds the check itself opens (listing /proc)
    are closed before it returns and never reported.

    Limits: an fd closed and reopened on the same file (same inode: ``/dev/null``
    again) inside the block is taken for the old one, as nothing tells the two apart
    without holding the old description; an fd the block's other threads open is
    this process's like any other; a grandchild re-parented away (its parent exited)
    is no descendant any more. ``start()`` and ``stop()`` do what ``with`` does, for
    runners whose hooks split the block (the pytest plugin); a check may run again.
    """

    def __init__(self) -> None:
        self._before: _Snapshot | None = None
        self._leaks: FdLeaks | None = None

    def start(self) -> None:
        """Records the fd table and the descendants: the block begins."""
        self._leaks = None
        self._before = _snapshot()

    def stop(self) -> FdLeaks:
        """Compares with what ``start()`` recorded: the block ends. Returns ``leaks``."""
        if self._before is None:
            raise RuntimeError("FdLeakCheck.stop() without start(): the check was not started")
        before, self._before = self._before, None
        self._leaks = _compare(before)
        return self._leaks

    @property
    def leaks(self) -> FdLeaks:
        """What the last block left behind; RuntimeError until a block has ended."""
        if self._leaks is None:
            raise RuntimeError(
                "FdLeakCheck.leaks is known once the block has ended (after the with "
                "statement, or stop())"
            )
        return self._leaks

    def __enter__(self) -> FdLeakCheck:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()
