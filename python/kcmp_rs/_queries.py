"""The questions users come with, answered without a whole scan: who holds one open
file description (``holders``), what two processes share (``shared_files``), and what
an epoll set watches (``epoll_targets``).

Orchestration only: the comparisons are the native module's (``_native.holders``
does one kcmp per candidate fd with the GIL released), /proc is read through
``_proc``, and the result types live in ``_answers``.
"""

from __future__ import annotations

import errno
import operator
import os
from collections.abc import Iterable
from typing import Callable

from kcmp_rs import _native
from kcmp_rs._answers import EpollTarget, Holders, SharedFiles
from kcmp_rs._proc import file_type, list_pids, read_command, read_mode, read_target
from kcmp_rs._results import (
    EXITED,
    NO_SUCH_PROCESS,
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
)
from kcmp_rs._types import FdNotOpenError, ProcessGoneError

__all__ = ["epoll_targets", "holders", "shared_files"]

#: Processes per native call: progress is reported, and Ctrl-C noticed, between them.
_CHUNK = 64

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
            skipped[p] = code
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


#: Classifications the ladder search runs at most while candidates keep going away.
_LADDER_ATTEMPTS = 64


def _search_by_ladder(
    pid: int, fd: int, readers: list[int], skipped: dict[int, str], allow_pidfd_getfd: bool
) -> tuple[list[Ref], int, list[Ref]]:
    """Without kcmp: the fds on the target's inode, grouped by the batch's exact
    fallbacks; what they cannot decide is returned as undecided, never guessed.

    The holders are the target's group as the fallbacks decided it (the asker's own
    dups included even where the target is undecided against another process's fd);
    ``undecided`` the refs on the inode whose relation to the target stays unknown.
    The batch raises rather than skips: a candidate that exits during it is skipped
    as exited and the batch run again without it, an fd closed since the listing is
    left out the same way, so nothing is dropped silently."""
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
    for _ in range(_LADDER_ATTEMPTS):
        try:
            groups, undecided = _native.classify_files_partial(
                refs, missing="raise", allow_pidfd_getfd=allow_pidfd_getfd
            )
        except (ProcessGoneError, FdNotOpenError) as err:
            if err.pid == pid:
                raise  # the target's process or fd: the question has no answer now
            if isinstance(err, ProcessGoneError):
                skipped[err.pid] = EXITED
                refs = [r for r in refs if r[0] != err.pid]
            else:
                refs = [r for r in refs if r != (err.pid, err.fd)]
            continue
        mine = next((set(g) for g in groups if (pid, fd) in g), {(pid, fd)})
        kept = set(refs)
        found = [r for r in candidates if r in mine and r in kept]
        unknown = [r for r in undecided if r not in mine]
        return found, len(candidates), unknown
    raise BlockingIOError(
        errno.EAGAIN,
        f"{os.strerror(errno.EAGAIN)}: the processes searched kept changing "
        f"({_LADDER_ATTEMPTS} attempts); try again",
    )


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
    pid, fd = operator.index(pid), operator.index(fd)  # numpy ints: plain in the answer
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


# ---- shared files ----


def shared_files(pid1: int, pid2: int, *, allow_pidfd_getfd: bool = False) -> SharedFiles:
    """The open file descriptions ``pid1`` and ``pid2`` share, told apart from separate
    opens of the same file: ``shared`` pairs ``(fds_in_pid1, fds_in_pid2)`` by
    description, ``reopened`` pairs them by inode for the fds whose description the
    other process does not hold.

    One native pass (``_native.shared_files``): both processes (thread ids included)
    are pinned before either is listed; if either exits during the call,
    ``ProcessLookupError``. Where kcmp is blocked the batch's exact fallbacks decide
    (``allow_pidfd_getfd`` as for ``classify_files``); fds they cannot decide are in
    ``undecided``.
    """
    shared, reopened, same_table, undecided = _native.shared_files(
        pid1, pid2, allow_pidfd_getfd=allow_pidfd_getfd
    )
    return SharedFiles(
        int(pid1),
        int(pid2),
        tuple((tuple(a), tuple(b)) for a, b in shared),
        tuple((tuple(a), tuple(b)) for a, b in reopened),
        same_table,
        tuple(undecided),
    )


# ---- epoll ----


def _members(refs: Iterable[Ref], commands: dict[int, str]) -> tuple[Member, ...]:
    """``Member``s with their command names, each read once per call."""
    members = []
    for p, f in refs:
        if p not in commands:
            commands[p] = read_command(p)
        members.append(Member(p, f, commands[p]))
    return tuple(members)


def _epoll_targets(
    pid: int, epfd: int, pids: Iterable[int] | None
) -> tuple[list[EpollTarget], int]:
    """``epoll_targets()`` and the number of KCMP_EPOLL_TFD calls it made."""
    regs, names, calls = _native.epoll_targets(pid, epfd, pids)
    commands = {p: "?" if c is None else os.fsdecode(c) for p, c in names}
    answers = [
        EpollTarget(
            tfd,
            index,
            events,
            data,
            ino,
            status,
            tuple(Member(p, f, commands.get(p, "?")) for p, f in found),
        )
        for tfd, index, events, data, ino, status, found in regs
    ]
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
