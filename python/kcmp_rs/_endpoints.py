"""``endpoints()``: the other ends of the pipe, FIFO, Unix socket, pty or eventfd one fd
is an end of, each end's open file descriptions with their holders.

One native pass (``_native.endpoints``) finds the channel, its ends' files and every
description of them; this module presents it (``End``, ``Endpoints``).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Callable

from kcmp_rs import _native
from kcmp_rs._errors import NotAChannelError
from kcmp_rs._proc import list_pids
from kcmp_rs._results import SCHEMA_VERSION, Description, Member, Ref, Skipped
from kcmp_rs._scan import _check_flag, _check_progress, _checked_pids, scan_from_report
from kcmp_rs._schema import EndDict, EndpointsDict

__all__ = ["End", "Endpoints", "endpoints"]

#: The order ends are listed in, per kind of channel.
_SIDES = ("read", "write", "socket", "peer", "master", "slave", "counter")

#: What a type is called in NotAChannelError's message.
_NAMES = {
    "REG": "a regular file",
    "DIR": "a directory",
    "CHR": "a character device",
    "BLK": "a block device",
    "LNK": "a symbolic link",
    "SOCK": "a socket",
}


@dataclass(frozen=True)
class End:
    """One end of a channel: ``side`` (``"read"`` or ``"write"`` for a pipe or FIFO,
    ``"socket"`` (the asked one) or ``"peer"`` for a Unix socket, ``"master"`` or
    ``"slave"`` for a pty, ``"counter"`` for an eventfd) and its open file
    descriptions, each with its holders (``members``)."""

    side: str
    descriptions: tuple[Description, ...]

    def to_dict(self) -> EndDict:
        """The end as a JSON object: ``side`` and ``descriptions``."""
        return {"side": self.side, "descriptions": [d.to_dict() for d in self.descriptions]}


@dataclass(frozen=True)
class Endpoints:
    """The channel fd ``fd`` of ``pid`` is an end of (``kind``: ``"pipe"``, ``"fifo"``,
    ``"unix"``, ``"pty"`` or ``"eventfd"``; ``target`` as /proc shows the fd), and
    every end of it among the processes read (``ends``). A FIFO description opened
    O_RDWR is on both sides. ``sides``: the sides the asked fd is on. ``partial`` says
    why an end may be missing (sock_diag refused, ...), else None; ``skipped`` and
    ``undecided`` as in ``scan()``; ``complete`` when all three are empty.
    """

    pid: int
    fd: int
    kind: str
    target: str
    ends: tuple[End, ...]
    skipped: tuple[Skipped, ...]
    processes_read: int
    undecided: tuple[Ref, ...] = ()
    fd_table_shared: tuple[tuple[int, ...], ...] = ()
    partial: str | None = None

    @property
    def sides(self) -> tuple[str, ...]:
        """The sides the asked fd is on."""
        return tuple(e.side for e in self.ends if self._holds_asked(e))

    @property
    def peers(self) -> tuple[Member, ...]:
        """Who is at the other end, as lsfd's ENDPOINTS column counts it: for a Unix
        socket or a pty the holders of the other side; for a pipe, FIFO or eventfd
        every other fd on the channel (its own dups and both sides included)."""
        if self.kind in ("unix", "pty"):
            mine = set(self.sides)
            ends = [e for e in self.ends if e.side not in mine]
        else:
            ends = list(self.ends)
        seen = {(m.pid, m.fd): m for e in ends for d in e.descriptions for m in d.members}
        for ref in self._asked():
            seen.pop(ref, None)
        return tuple(seen[k] for k in sorted(seen))

    @property
    def complete(self) -> bool:
        """Whether every process was read, every fd decided, and nothing is partial."""
        return not self.skipped and not self.undecided and self.partial is None

    def _asked(self) -> set[Ref]:
        """The asked fd as members show it: processes sharing one fd table (threads)
        are read once, under the smallest pid."""
        table = next((t for t in self.fd_table_shared if self.pid in t), (self.pid,))
        return {(p, self.fd) for p in table}

    def _holds_asked(self, end: End) -> bool:
        asked = self._asked()
        return any((m.pid, m.fd) in asked for d in end.descriptions for m in d.members)

    def to_dict(self) -> EndpointsDict:
        """The answer as the JSON document of ``kcmp-rs peers -J``."""
        return {
            "schema_version": SCHEMA_VERSION,
            "pid": self.pid,
            "fd": self.fd,
            "kind": self.kind,
            "target": self.target,
            "sides": list(self.sides),
            "ends": [e.to_dict() for e in self.ends],
            "peers": [m.to_dict() for m in self.peers],
            "partial": self.partial,
            "skipped": [s.to_dict() for s in self.skipped],
            "undecided": [{"pid": p, "fd": f} for p, f in self.undecided],
            "processes_read": self.processes_read,
            "fd_table_shared": [list(g) for g in self.fd_table_shared],
        }


def endpoints(
    pid: int,
    fd: int,
    pids: Iterable[int] | None = None,
    *,
    allow_pidfd_getfd: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> Endpoints:
    """The channel fd ``fd`` of ``pid`` is one end of, and every other end: for each
    end, its open file descriptions (told apart exactly, by kcmp or its exact
    fallbacks) with their holders.

    Pipes and FIFOs by inode, sides by each description's access mode; Unix sockets by
    their peer (sock_diag, in the socket's own network namespace); ptys by index (a
    master's fdinfo ``tty-index``, a slave's device); eventfds by their one
    description. ``pids``: the processes to search (None: every process in /proc; the
    asked one always). ``allow_pidfd_getfd``: where kcmp is blocked, let pidfd_getfd(2)
    copy other processes' fds to tell their descriptions apart (as in ``scan()``).
    ``progress(done, total)`` is called between processes; an exception it raises ends
    the call and propagates. One native pass, as ``scan()``.

    Returns an ``Endpoints``: ``ends`` per side, ``peers`` as lsfd's ENDPOINTS counts
    them, ``partial`` saying why an end may be missing (sock_diag refused).

    Raises ``NotAChannelError`` (a ValueError) for an fd that is none of those (its
    type named), ``FdNotOpenError`` and ``ProcessGoneError`` for the asked fd and
    process, ``BlockingIOError`` when the asked fd is closed or replaced during the
    call, TypeError or ValueError for bad arguments.
    """
    _check_flag(allow_pidfd_getfd, "allow_pidfd_getfd")
    _check_progress(progress)
    wanted = list_pids() if pids is None else _checked_pids(pids)
    kind, file_type, target, report, sides, partial = _native.endpoints(
        pid, fd, wanted, allow_pidfd_getfd, progress
    )
    shown = os.fsdecode(target)
    if kind is None:
        what = _NAMES.get(file_type, f"of type {file_type}")
        raise NotAChannelError(
            f"fd {fd} of process {pid} is {what} ({shown}), not an end of a pipe, FIFO, "
            "Unix socket, pty or eventfd",
            pid=pid,
            fd=fd,
            file_type=file_type,
        )
    found = scan_from_report(report)
    ends = tuple(
        End(side, tuple(d for d, on in zip(found.descriptions, sides) if side in on))
        for side in _SIDES
        if any(side in on for on in sides)
    )
    return Endpoints(
        pid,
        fd,
        kind,
        shown,
        ends,
        found.skipped,
        found.processes_read,
        found.undecided,
        found.fd_table_shared,
        partial,
    )
