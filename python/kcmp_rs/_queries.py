"""The questions users come with, answered without a whole scan: who holds one open
file description (``holders``), what two processes share (``shared_files``), and what
an epoll set watches (``epoll_targets``).

Orchestration only: the comparisons are the native module's (``_native.holders``
does one kcmp per candidate fd with the GIL released), /proc is read through
``_proc``, and the result types live in ``_answers``.
"""

from __future__ import annotations

import errno
import os
import select
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Literal

from kcmp_rs import _native
from kcmp_rs._answers import EpollTarget, Holders, SharedFiles
from kcmp_rs._proc import file_type, list_pids, read_command, read_mode, read_target
from kcmp_rs._results import (
    EXITED,
    NO_SUCH_PROCESS,
    PERMISSION_DENIED,
    ZOMBIE,
    Description,
    Member,
    Ref,
    Skipped,
)
from kcmp_rs._scan import (
    _check_flag,
    _check_progress,
    _checked_pids,
    _fd_tables,
    _reason,
    classify_refs,
)
from kcmp_rs._types import FdNotOpenError, GoneKind, KcmpError, KcmpType, ProcessGoneError

__all__ = ["epoll_targets", "holders", "shared_files"]

#: Processes per native call: progress is reported, and Ctrl-C noticed, between them.
_CHUNK = 64

#: The native search's reason codes, as ``Skipped.reason`` says them.
_REASONS = {
    "absent": NO_SUCH_PROCESS,
    "exited": EXITED,
    "zombie": ZOMBIE,
    "denied": PERMISSION_DENIED,
}


def _require_kcmp() -> None:
    """Raises the native ``KcmpUnavailableError`` (with the reason) where kcmp is
    unusable: a self-compare is what the native calls would refuse first."""
    me = os.getpid()
    _native.kcmp(me, me, KcmpType.VM)


# ---- holders ----


def _describe_target(pid: int, fd: int, members: tuple[Member, ...]) -> Description:
    target = read_target(pid, fd)
    return Description(
        target if target is not None else "?",
        read_mode(pid, fd),
        members,
        file_type(pid, fd, target),
    )


def _search_by_kcmp(
    pid: int,
    fd: int,
    readers: list[int],
    skipped: dict[int, str],
    progress: Callable[[int, int], None] | None,
    done: int,
    total: int,
) -> tuple[list[Ref], int]:
    found: list[Ref] = []
    compared = 0
    for start in range(0, len(readers), _CHUNK):
        chunk = readers[start : start + _CHUNK]
        refs, gone, _calls, fds = _native.holders(pid, fd, chunk)
        found.extend(refs)
        compared += fds
        for p, code in gone:
            skipped[p] = _REASONS.get(code, code)
        done += len(chunk)
        if progress is not None:
            progress(done, total)
    return found, compared


def _inode(pid: int, fd: int) -> tuple[int, int] | None:
    try:
        st = os.fstat(fd) if pid == os.getpid() else os.stat(b"/proc/%d/fd/%d" % (pid, fd))
    except OSError:
        return None
    return st.st_dev, st.st_ino


def _search_by_ladder(
    pid: int, fd: int, readers: list[int], skipped: dict[int, str], allow_pidfd_getfd: bool
) -> tuple[list[Ref], int, list[Ref]]:
    """Without kcmp: the fds on the target's inode, grouped by the batch's exact
    fallbacks; what they cannot decide is returned as undecided, never guessed."""
    key = _inode(pid, fd)
    candidates: list[Ref] = []
    for reader in readers:
        try:
            fds = _native.open_fds(reader)
        except OSError as err:
            skipped[reader] = _reason(err, absent=NO_SUCH_PROCESS)
            continue
        candidates.extend((reader, f) for f in fds if _inode(reader, f) == key)
    refs = [(pid, fd), *[c for c in candidates if c != (pid, fd)]]
    groups, undecided = classify_refs(refs, allow_pidfd_getfd=allow_pidfd_getfd)
    mine = next((g for g in groups if (pid, fd) in g), ())
    return [r for r in mine if r in set(candidates)], len(candidates), undecided


def holders(
    pid: int,
    fd: int,
    pids: Iterable[int] | None = None,
    *,
    allow_pidfd_getfd: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> Holders:
    """Every ``(pid, fd)`` among ``pids`` that refers to the open file description of
    ``fd`` in ``pid``: who still holds the write end of a pipe, who else has a socket
    or a lock file open as the same description.

    ``pids``: the processes to search (None: every process in /proc); the asked fd is
    among the holders when ``pid`` is. Processes sharing an fd table are read once,
    under the smallest pid (``fd_table_shared``). A process that cannot be read, or
    exits during the search, is listed in ``skipped`` with the reason, never taken
    as holding nothing; ``complete`` says whether the answer covers every process.

    Cost: one kcmp per candidate fd (no stat, no grouping), plus a listing of each
    process's /proc/PID/fd. Where kcmp is blocked, the fds on the target's inode are
    compared with the batch's exact fallbacks (``allow_pidfd_getfd`` as for
    ``classify_files``) and what they cannot decide is in ``undecided``.

    Raises ``ProcessLookupError`` when ``pid`` does not exist or exits during the
    search, ``OSError`` (EBADF) when ``fd`` is not open in it, ``BlockingIOError``
    when ``fd`` was closed or replaced during the search.
    """
    _check_flag(allow_pidfd_getfd, "allow_pidfd_getfd")
    _check_progress(progress)
    wanted = list_pids() if pids is None else _checked_pids(pids)
    # The arguments checked, and the target found open, before any other process is
    # read: the caller's mistakes are the native calls' exceptions.
    _native.same_file(pid, fd, pid, fd, allow_pidfd_getfd=allow_pidfd_getfd)
    skipped: dict[int, str] = {}
    tables = _fd_tables(wanted, skipped)
    readers = [t[0] for t in tables]
    undecided: list[Ref] = []
    if _native.support(refresh=False)[0]:
        found, compared = _search_by_kcmp(
            pid, fd, readers, skipped, progress, len(skipped), len(wanted)
        )
    else:
        found, compared, undecided = _search_by_ladder(pid, fd, readers, skipped, allow_pidfd_getfd)
        if progress is not None:
            progress(len(wanted), len(wanted))
    members = _members(sorted(found), {})
    read = [t for t in tables if t[0] not in skipped]
    return Holders(
        pid=pid,
        fd=fd,
        description=_describe_target(pid, fd, members),
        skipped=tuple(Skipped(p, r) for p, r in sorted(skipped.items())),
        processes_read=sum(len(t) for t in read),
        fds_compared=compared,
        undecided=tuple(undecided),
        fd_table_shared=tuple(t for t in read if len(t) > 1),
    )


# ---- pinning processes for the pure-Python answers ----


@contextmanager
def _pinned(pids: Iterable[int]) -> Iterator[tuple[Callable[[], list[int]], set[int]]]:
    """Pidfds for ``pids`` while the block runs; yields a check listing those that
    have exited since (a pidfd polls readable once its process has exited), and the
    pidfds' numbers, which are never the caller's fds."""
    held: dict[int, int] = {}
    try:
        for pid in sorted(set(pids)):
            if pid == os.getpid() or pid in held:
                continue
            try:
                held[pid] = os.pidfd_open(pid)
            except ProcessLookupError:
                raise _gone(pid, "absent") from None

        def exited() -> list[int]:
            ready = select.select(list(held.values()), [], [], 0)[0]
            return sorted(p for p, f in held.items() if f in ready)

        yield exited, set(held.values())
    finally:
        for f in held.values():
            os.close(f)


def _gone(pid: int, kind: GoneKind) -> ProcessGoneError:
    if kind == "absent":
        text = f"process {pid} does not exist"
    else:
        text = f"process {pid} exited during the call (its pid may now name another process)"
    return ProcessGoneError(errno.ESRCH, f"{os.strerror(errno.ESRCH)}: {text}", pid=pid, kind=kind)


# ---- shared files ----


def _by_inode(groups: Sequence[tuple[Ref, ...]]) -> dict[tuple[int, int], list[tuple[Ref, ...]]]:
    inodes: dict[tuple[int, int], list[tuple[Ref, ...]]] = defaultdict(list)
    for group in groups:
        for pid, fd in group:
            key = _inode(pid, fd)
            if key is not None:
                inodes[key].append(group)
                break
    return inodes


def _sides(group: Sequence[Ref], pid1: int, pid2: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
    return (
        tuple(sorted(f for p, f in group if p == pid1)),
        tuple(sorted(f for p, f in group if p == pid2)),
    )


def shared_files(pid1: int, pid2: int, *, allow_pidfd_getfd: bool = False) -> SharedFiles:
    """The open file descriptions ``pid1`` and ``pid2`` share, told apart from separate
    opens of the same file: ``shared`` pairs ``(fds_in_pid1, fds_in_pid2)`` by
    description, ``reopened`` pairs them by inode for the fds whose description the
    other process does not hold.

    Both processes are pinned: if either exits during the call, ``ProcessLookupError``.
    Where kcmp is blocked the batch's exact fallbacks decide (``allow_pidfd_getfd`` as
    for ``classify_files``); fds they cannot decide are in ``undecided``.
    """
    _check_flag(allow_pidfd_getfd, "allow_pidfd_getfd")
    fds1 = _native.open_fds(pid1)
    same_table = pid1 == pid2
    if not same_table and _native.support(refresh=False)[0]:
        same_table = _native.kcmp(pid1, pid2, KcmpType.FILES) == 0
    fds2 = [] if same_table else _native.open_fds(pid2)
    with _pinned([pid1, pid2]) as (exited, _):
        refs = [(pid1, f) for f in fds1] + [(pid2, f) for f in fds2]
        groups, undecided = classify_refs(refs, allow_pidfd_getfd=allow_pidfd_getfd)
        inodes = _by_inode(groups)
        gone = exited()
    if gone:
        raise _gone(gone[0], "exited")
    if same_table:
        shared = [(g, g) for g in (_sides(grp, pid1, pid1)[0] for grp in groups)]
        return SharedFiles(pid1, pid2, tuple(shared), (), True, tuple(undecided))
    shared = [_sides(g, pid1, pid2) for g in groups]
    both = [s for s in shared if s[0] and s[1]]
    reopened = []
    for key in sorted(inodes):
        alone = [_sides(g, pid1, pid2) for g in inodes[key]]
        alone = [s for s in alone if not (s[0] and s[1])]
        side1 = tuple(sorted(f for s in alone for f in s[0]))
        side2 = tuple(sorted(f for s in alone for f in s[1]))
        held_by = {p for g in inodes[key] for p, _ in g}
        if alone and held_by == {pid1, pid2}:
            reopened.append((side1, side2))
    return SharedFiles(pid1, pid2, tuple(both), tuple(reopened), False, tuple(undecided))


# ---- epoll ----


@dataclass(frozen=True)
class _Registration:
    tfd: int
    index: int
    events: int
    data: int
    ino: int


def _registrations(pid: int, epfd: int) -> list[_Registration]:
    """The set's registrations from /proc/PID/fdinfo/EPFD, in the kernel's order, each
    with its index among the registrations under the same fd number (the ``toff``
    KCMP_EPOLL_TFD takes)."""
    target = read_target(pid, epfd)
    if target is None:
        _native.same_file(pid, epfd, pid, epfd)  # raises the documented error
    if target != "anon_inode:[eventpoll]":
        detail = f"fd {epfd} of process {pid} is not an epoll fd"
        raise KcmpError(errno.EINVAL, f"{os.strerror(errno.EINVAL)}: {detail}", pid=pid, fd=epfd)
    with open(b"/proc/%d/fdinfo/%d" % (pid, epfd), "rb") as f:
        text = f.read().decode("ascii", "replace")
    seen: dict[int, int] = defaultdict(int)
    regs = []
    for line in text.splitlines():
        if not line.startswith("tfd:"):
            continue
        fields = line.replace(":", " ").split()
        values = dict(zip(fields[0::2], fields[1::2]))
        tfd = int(values["tfd"])
        regs.append(
            _Registration(
                tfd=tfd,
                index=seen[tfd],
                events=int(values["events"], 16),
                data=int(values["data"], 16),
                ino=int(values["ino"], 16),
            )
        )
        seen[tfd] += 1
    return regs


def _members(refs: Iterable[Ref], commands: dict[int, str]) -> tuple[Member, ...]:
    """``Member``s with their command names, each read once per call."""
    members = []
    for p, f in refs:
        if p not in commands:
            commands[p] = read_command(p)
        members.append(Member(p, f, commands[p]))
    return tuple(members)


def _by_ino(pid: int, own: set[int], others: list[int]) -> dict[int, list[Ref]]:
    """The candidate fds of ``pid`` and ``others``, keyed by inode number (fdinfo gives
    a registration's inode, never its device: numbers equal across filesystems only
    add candidates, which kcmp then turns down)."""
    by_ino: dict[int, list[Ref]] = defaultdict(list)
    for p in [pid, *others]:
        for f in sorted(own) if p == pid else _native.open_fds(p):
            key = _inode(p, f)
            if key is not None:
                by_ino[key[1]].append((p, f))
    return by_ino


def _registered(pid: int, epfd: int, reg: _Registration, candidates: list[Ref]) -> list[Ref]:
    """The candidates that are the file ``reg`` registered (KCMP_EPOLL_TFD each)."""
    found = []
    for p, f in candidates:
        try:
            same = _native.same_epoll_target(p, f, pid, epfd, reg.tfd, reg.index)
        except FdNotOpenError as err:
            if err.pid == p and err.fd == f:
                continue  # closed since it was listed: not a holder now
            raise
        if same:
            found.append((p, f))
    return found


def _status(
    pid: int, tfd: int, found: list[Ref], own: set[int]
) -> Literal["open", "closed", "reused"]:
    """Whether ``tfd`` still names the registered file ("open"), names nothing
    ("closed") or another file ("reused")."""
    if (pid, tfd) in found:
        return "open"
    return "reused" if tfd in own else "closed"


def _epoll_targets(
    pid: int, epfd: int, pids: Iterable[int] | None
) -> tuple[list[EpollTarget], int]:
    """``epoll_targets()`` and the number of KCMP_EPOLL_TFD calls it made."""
    _require_kcmp()
    others = [] if pids is None else [p for p in _checked_pids(pids) if p != pid]
    with _pinned([pid, *others]) as (exited, pins):
        regs = _registrations(pid, epfd)
        own = set(_native.open_fds(pid))
        if pid == os.getpid():
            own -= pins
        by_ino = _by_ino(pid, own, others)
        calls = 0
        answers = []
        commands: dict[int, str] = {}
        for reg in regs:
            candidates = by_ino.get(reg.ino, [])
            calls += len(candidates)
            found = _registered(pid, epfd, reg, candidates)
            status = _status(pid, reg.tfd, found, own)
            answers.append(
                EpollTarget(
                    reg.tfd,
                    reg.index,
                    reg.events,
                    reg.data,
                    reg.ino,
                    status,
                    _members(found, commands),
                )
            )
        gone = exited()
    if gone:
        raise _gone(gone[0], "exited")
    return answers, calls


def epoll_targets(pid: int, epfd: int, pids: Iterable[int] | None = None) -> list[EpollTarget]:
    """What epoll set ``epfd`` of ``pid`` watches: one ``EpollTarget`` per registration
    in ``/proc/PID/fdinfo/EPFD``, each with the ``(pid, fd)`` that refer to the
    registered file now (in ``pid`` and in ``pids``, if given) and whether its fd
    number still names it (``status``: ``"open"``, ``"closed"`` or ``"reused"``).

    Registered files are found with kcmp's ``KCMP_EPOLL_TFD`` (the 12-byte slot),
    only among fds on the registered inode: one call per candidate. Works for sets
    inherited through fork or passed over a Unix socket, and for a file registered
    under several fd numbers. Raises ``KcmpUnavailableError`` where kcmp is blocked
    (nothing else can tell), ``OSError`` EINVAL when ``epfd`` is not an epoll fd,
    EBADF when it is not open, and ``ProcessLookupError`` when a process asked about
    does not exist or exits during the call.
    """
    return _epoll_targets(pid, epfd, pids)[0]
