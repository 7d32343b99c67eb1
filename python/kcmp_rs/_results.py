"""Every result type of the package: frozen dataclasses whose ``to_dict()`` is the JSON
the ``kcmp-rs`` commands print (``scan()``'s schema and name rules:
``help(kcmp_rs.scan)``; the others' in ``_schema``).

Plain data: nothing here reads /proc or calls the native module, and this module
imports nothing else of the package but the name rules (``_text``). Each holder of a
description is a ``Member`` (``pid``, ``fd``, ``command``) and a description keeps
one ``members`` list of them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, TypeVar, cast

from kcmp_rs._text import escape, text_fields

if TYPE_CHECKING:
    from kcmp_rs._channels import Channel
    from kcmp_rs._schema import (
        ChildHolderDict,
        DescriptionDict,
        EpollTargetDict,
        FdLeaksDict,
        FileDescriptionDict,
        HoldersDict,
        LeakedFdDict,
        MemberDict,
        PairDict,
        ScanDict,
        SharedFilesDict,
        SkippedDict,
        WhoDict,
        WhoFileDict,
    )

__all__ = [
    "EXITED",
    "NO_SUCH_PROCESS",
    "OWNER_EXITED",
    "PERMISSION_DENIED",
    "SCHEMA_VERSION",
    "ZOMBIE",
    "ChildHolder",
    "Description",
    "EpollTarget",
    "FdLeaks",
    "FileDescription",
    "Holders",
    "LeakedFd",
    "Member",
    "Ref",
    "Scan",
    "SharedFiles",
    "Sharing",
    "Skipped",
    "Support",
    "Who",
    "WhoFile",
]

Ref = tuple[int, int]

#: The version of every JSON document the package prints (``schema_version``).
SCHEMA_VERSION = 2

#: ``Skipped.reason`` values (plus ``"error: <message>"`` for anything else).
NO_SUCH_PROCESS = "no such process"
EXITED = "exited"
ZOMBIE = "zombie"
PERMISSION_DENIED = "permission denied"
OWNER_EXITED = "fd table owner exited"


class _Deferred:
    """A frozen dataclass some of whose fields may be built on first access: the views of
    a native report (``deferred``) build their members only when they are read, once.
    Equality, ``repr``, ``hash``, ``dataclasses.replace`` and pickling read every field,
    so they see the built values; an instance built any other way is an ordinary
    dataclass."""

    if not TYPE_CHECKING:  # typed attribute access stays exact for the checkers

        def __getattr__(self, name: str) -> Any:
            later = self.__dict__.get("_later")
            if later is None or name not in later:
                raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")
            value = later[name]()
            object.__setattr__(self, name, value)
            if all(n in self.__dict__ for n in later):
                self.__dict__.pop("_later", None)  # the report is no longer needed
            return value

    def __getstate__(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}  # type: ignore[arg-type]

    def __setstate__(self, state: dict[str, Any]) -> None:
        for name, value in state.items():
            object.__setattr__(self, name, value)


_D = TypeVar("_D", bound=_Deferred)


def deferred(
    cls: type[_D], now: Mapping[str, object], later: Mapping[str, Callable[[], object]]
) -> _D:
    """A ``cls`` with the fields ``now`` set and each of ``later`` built by its function
    on first access. Every field is in exactly one of them; a deferred field has no
    default (a default is a class attribute, which would be read instead)."""
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    if set(now) | set(later) != names or set(now) & set(later):
        raise TypeError(
            f"{cls.__name__}: fields {sorted(names)}, given {sorted(now)} + {sorted(later)}"
        )
    if any(hasattr(cls, name) for name in later):
        raise TypeError(f"{cls.__name__}: a field with a default cannot be deferred")
    obj = cls.__new__(cls)
    for name, value in now.items():
        object.__setattr__(obj, name, value)
    object.__setattr__(obj, "_later", dict(later))
    return obj


@dataclass(frozen=True)
class Member:
    """One fd of one process: ``fd`` in ``pid``, whose command (comm) is ``command``;
    ``boundary``: the process's boundary value when a scan asked for one."""

    pid: int
    fd: int
    command: str
    boundary: str | None = None

    def to_dict(self) -> MemberDict:
        """The member as a JSON object: ``pid``, ``fd``, ``command`` (``boundary``
        only when it has one)."""
        doc: dict[str, object] = {
            "pid": self.pid,
            "fd": self.fd,
            **text_fields("command", self.command),
        }
        if self.boundary is not None:
            doc["boundary"] = self.boundary
        return cast("MemberDict", doc)


@dataclass(frozen=True)
class Description(_Deferred):
    """One open file description and the fds that refer to it.

    ``type`` is the file type (``REG``, ``FIFO``, ``SOCK``, an anon inode's name, ...).
    ``boundaries``: with a boundary asked, the distinct values of its holders, sorted
    (more than one: it crosses the boundary); else empty.
    """

    target: str
    mode: str
    members: tuple[Member, ...]
    type: str = "?"
    boundaries: tuple[str, ...] = ()

    def to_dict(self) -> DescriptionDict:
        """The description as a JSON object: ``type``, ``mode``, ``target``, ``members``
        (and ``boundaries`` when a boundary was asked)."""
        doc: dict[str, object] = {
            "type": self.type,
            "mode": self.mode,
            **text_fields("target", self.target),
            "members": [m.to_dict() for m in self.members],
        }
        if self.boundaries:
            doc["boundaries"] = list(self.boundaries)
        return cast("DescriptionDict", doc)


@dataclass(frozen=True)
class Skipped:
    """A process the scan could not read, and why (the reasons: ``help(kcmp_rs.scan)``)."""

    pid: int
    reason: str

    def to_dict(self) -> SkippedDict:
        """The skipped process as a JSON object: ``pid``, ``reason``."""
        return {"pid": self.pid, "reason": self.reason}


@dataclass(frozen=True)
class Scan(_Deferred):
    """What ``scan()`` found. ``undecided`` lists the ``(pid, fd)`` pairs that could not
    be classified (kcmp blocked and no exact fallback); ``fd_table_shared`` the sets
    of pids that share one fd table, smallest (the one read) first. With ``ipc``:
    ``channels`` between processes (None without) and ``channel_notes``, what the
    channel search could not read."""

    descriptions: tuple[Description, ...]
    skipped: tuple[Skipped, ...]
    processes_read: int
    fds_classified: int
    undecided: tuple[Ref, ...] = ()
    fd_table_shared: tuple[tuple[int, ...], ...] = ()
    channels: tuple[Channel, ...] | None = None
    channel_notes: tuple[str, ...] = ()

    @property
    def shared(self) -> tuple[Description, ...]:
        """The descriptions held by more than one fd."""
        return tuple(d for d in self.descriptions if len(d.members) > 1)

    def to_dict(self) -> ScanDict:
        """The whole scan as the JSON document of ``kcmp-rs scan -J``."""
        doc: ScanDict = {
            "schema_version": SCHEMA_VERSION,
            "descriptions": [d.to_dict() for d in self.descriptions],
            "skipped": [s.to_dict() for s in self.skipped],
            "processes_read": self.processes_read,
            "fds_classified": self.fds_classified,
            "undecided": [{"pid": p, "fd": f} for p, f in self.undecided],
            "fd_table_shared": [list(g) for g in self.fd_table_shared],
        }
        if self.channels is not None:
            doc["channels"] = [c.to_dict() for c in self.channels]
            doc["channel_notes"] = list(self.channel_notes)
        return doc


# ---- holders, shared_files, epoll_targets ----


@dataclass(frozen=True)
class Holders(_Deferred):
    """Every fd that refers to the open file description of fd ``fd`` of ``pid``.

    ``description.members`` are the holders, ascending ``(pid, fd)``, the asked fd
    included when its process was among those read. ``skipped`` lists the processes
    that could not be read, and ``undecided`` the fds no exact method could compare
    (kcmp blocked): the answer is complete only when both are empty (``complete``).
    ``fd_table_shared``: sets of pids sharing one fd table, read once under the
    smallest. ``fds_compared``: candidate fds compared with the target.
    """

    pid: int
    fd: int
    description: Description
    skipped: tuple[Skipped, ...]
    processes_read: int
    fds_compared: int
    undecided: tuple[Ref, ...] = ()
    fd_table_shared: tuple[tuple[int, ...], ...] = ()

    @property
    def members(self) -> tuple[Member, ...]:
        """The holders: ``description.members``."""
        return self.description.members

    @property
    def complete(self) -> bool:
        """Whether every process was read and every fd decided."""
        return not self.skipped and not self.undecided

    def to_dict(self) -> HoldersDict:
        """The answer as the JSON document of ``kcmp-rs holders -J``."""
        return {
            "schema_version": SCHEMA_VERSION,
            "pid": self.pid,
            "fd": self.fd,
            "description": self.description.to_dict(),
            "skipped": [s.to_dict() for s in self.skipped],
            "undecided": [{"pid": p, "fd": f} for p, f in self.undecided],
            "processes_read": self.processes_read,
            "fds_compared": self.fds_compared,
            "fd_table_shared": [list(g) for g in self.fd_table_shared],
        }


@dataclass(frozen=True)
class SharedFiles:
    """The open file descriptions two processes share (``shared_files()``).

    ``shared``: one ``(fds_in_pid1, fds_in_pid2)`` pair per description both hold:
    inherited through fork, passed over a socket, or a shared fd table. ``reopened``:
    one pair per file (inode) each has open through a description the other does not
    hold (separate opens), those fds only, neither side empty (a file one side holds
    only through a shared description is not in it). ``same_fd_table``: one fd table
    (threads, CLONE_FILES), so every fd is shared. ``undecided``: fds no exact method
    could compare (kcmp blocked), in no pair.
    """

    pid1: int
    pid2: int
    shared: tuple[tuple[tuple[int, ...], tuple[int, ...]], ...]
    reopened: tuple[tuple[tuple[int, ...], tuple[int, ...]], ...]
    same_fd_table: bool = False
    undecided: tuple[Ref, ...] = ()

    def to_dict(self) -> SharedFilesDict:
        """The answer as a JSON object."""

        def pairs(ps: tuple[tuple[tuple[int, ...], tuple[int, ...]], ...]) -> list[PairDict]:
            return [{"fds1": list(a), "fds2": list(b)} for a, b in ps]

        return {
            "schema_version": SCHEMA_VERSION,
            "pid1": self.pid1,
            "pid2": self.pid2,
            "same_fd_table": self.same_fd_table,
            "shared": pairs(self.shared),
            "reopened": pairs(self.reopened),
            "undecided": [{"pid": p, "fd": f} for p, f in self.undecided],
        }


@dataclass(frozen=True)
class EpollTarget:
    """One registration of an epoll set, as ``/proc/PID/fdinfo/EPFD`` lists it, checked
    against what is open now.

    ``tfd``: the fd number the file was registered under; ``index``: which of the
    registrations under that number it is (the kernel's ``toff``: 0 unless the number
    was closed, reused and registered again); ``events`` and ``data`` as registered;
    ``ino`` the registered file's inode. ``holders``: the ``(pid, fd)`` that refer to
    the registered file now, in the set's process and the other processes asked.
    ``status``: ``"open"`` (``tfd`` still refers to that file), ``"closed"`` (``tfd``
    is not open) or ``"reused"`` (``tfd`` now names another file).
    """

    tfd: int
    index: int
    events: int
    data: int
    ino: int
    status: Literal["open", "closed", "reused"]
    holders: tuple[Member, ...]

    def to_dict(self) -> EpollTargetDict:
        """The registration as a JSON object."""
        return {
            "tfd": self.tfd,
            "index": self.index,
            "events": self.events,
            "data": self.data,
            "ino": self.ino,
            "status": self.status,
            "holders": [m.to_dict() for m in self.holders],
        }


# ---- who ----


@dataclass(frozen=True)
class FileDescription(Description):
    """An open file description of a file ``who()`` was asked about, with the file
    offset its members share (``None`` once unreadable)."""

    offset: int | None = None

    def to_dict(self) -> FileDescriptionDict:
        """The description's object (``Description.to_dict()``) with ``offset``."""
        return cast("FileDescriptionDict", {**super().to_dict(), "offset": self.offset})


@dataclass(frozen=True)
class WhoFile:
    """One path ``who()`` was asked about: the file it resolves to (``device``,
    ``inode``: ``st_dev``, ``st_ino``) and its open file descriptions, ordered by
    their smallest member."""

    path: str
    device: int
    inode: int
    descriptions: tuple[FileDescription, ...]

    def to_dict(self) -> WhoFileDict:
        """The file as a JSON object (``path`` by the name rules of ``scan()``)."""
        doc: dict[str, object] = {
            **text_fields("path", self.path),
            "device": self.device,
            "inode": self.inode,
            "descriptions": [d.to_dict() for d in self.descriptions],
        }
        return cast("WhoFileDict", doc)


@dataclass(frozen=True)
class Who:
    """What ``who()`` found, one ``WhoFile`` per path asked, in order; ``skipped``,
    ``undecided`` and ``fd_table_shared`` as in ``Scan``."""

    files: tuple[WhoFile, ...]
    skipped: tuple[Skipped, ...]
    processes_read: int
    undecided: tuple[Ref, ...] = ()
    fd_table_shared: tuple[tuple[int, ...], ...] = ()

    @property
    def complete(self) -> bool:
        """Whether every process was read and every fd decided."""
        return not self.skipped and not self.undecided

    def to_dict(self) -> WhoDict:
        """The answer as the JSON document of ``kcmp-rs who -J``."""
        return {
            "schema_version": SCHEMA_VERSION,
            "files": [f.to_dict() for f in self.files],
            "skipped": [s.to_dict() for s in self.skipped],
            "processes_read": self.processes_read,
            "undecided": [{"pid": p, "fd": f} for p, f in self.undecided],
            "fd_table_shared": [list(g) for g in self.fd_table_shared],
        }


# ---- sharing, support ----


@dataclass(frozen=True)
class Sharing:
    """Which task resources two processes share (``sharing()``).

    ``io`` and ``sysvsem`` are also True when neither process has an I/O context or a
    SysV semaphore undo list: the kernel compares the two absent objects as equal.
    """

    vm: bool
    files: bool
    fs: bool
    sighand: bool
    io: bool
    sysvsem: bool


@dataclass(frozen=True)
class Support:
    """What this process may use (``support()``).

    ``kcmp``: kcmp(2) answers (False in sandboxes that block it, on kernels without
    it, or after ``disable_kcmp()``). ``dupfd_query``: fcntl F_DUPFD_QUERY (Linux
    6.10+). ``pidfd_getfd``: copying another process's fd. ``reason``: why kcmp is
    unusable, naming the cause and the fix; empty when it is usable.
    """

    kcmp: bool
    dupfd_query: bool
    pidfd_getfd: bool
    reason: str


# ---- the fd-leak check ----


@dataclass(frozen=True)
class LeakedFd:
    """An fd open after the block that was not open before it, or whose number now
    names another file than before (``reused``).

    ``dup_of``: the smallest fd open before the block, and still on the same file,
    that refers to the same open file description (``dup``, ``dup2``, ``F_DUPFD``,
    SCM_RIGHTS to oneself): the block made another fd of an old description, not a
    new one. ``same_as``: for a new description left open under several fds, the
    smallest of them (None on that one). ``undecided``: no exact method could tell
    (kcmp blocked here and no fallback applies), so ``dup_of`` is unknown.
    """

    fd: int
    target: str
    mode: str
    type: str
    dup_of: int | None = None
    same_as: int | None = None
    reused: bool = False
    undecided: bool = False

    @property
    def new_description(self) -> bool:
        """Whether the block opened the description itself (not a dup of an old one)."""
        return self.dup_of is None and not self.undecided

    def what(self) -> str:
        """What the fd is, in words, as the report says it."""
        if self.undecided:
            text = "a new description or a dup of an fd open before: undecided (kcmp blocked)"
        elif self.dup_of is not None:
            text = f"dup of fd {self.dup_of} (another fd of a description open before)"
        elif self.same_as is not None:
            text = f"the same new description as fd {self.same_as}"
        else:
            text = "a new open file description"
        if self.reused:
            text += f"; fd {self.fd} was another file before and was closed"
        return text

    def to_dict(self) -> LeakedFdDict:
        """The fd as a JSON object (``FdLeaks.to_dict()``'s ``fds``)."""
        doc = {
            "fd": self.fd,
            "type": self.type,
            "mode": self.mode,
            **text_fields("target", self.target),
            "dup_of": self.dup_of,
            "same_as": self.same_as,
            "reused": self.reused,
            "undecided": self.undecided,
        }
        return cast("LeakedFdDict", doc)


@dataclass(frozen=True)
class ChildHolder:
    """A descendant started during the block, still alive after it, that holds open
    file descriptions this process holds too.

    ``ppid`` is its parent (this process, or a descendant for a grandchild);
    ``descriptions`` the shared descriptions, each with its members in this process
    and in the child (``Member``: pid, fd, command).
    """

    pid: int
    ppid: int
    command: str
    descriptions: tuple[Description, ...]

    def to_dict(self) -> ChildHolderDict:
        """The child as a JSON object (``FdLeaks.to_dict()``'s ``children``)."""
        doc = {
            "pid": self.pid,
            "ppid": self.ppid,
            **text_fields("command", self.command),
            "descriptions": [d.to_dict() for d in self.descriptions],
        }
        return cast("ChildHolderDict", doc)


@dataclass(frozen=True)
class FdLeaks:
    """What ``FdLeakCheck`` found after its block, in process ``pid``.

    ``fds``: the leaked fds, ascending (``LeakedFd``); ``children``: live descendants
    started during the block that hold this process's descriptions (``ChildHolder``);
    ``undecided``: ``(pid, fd)`` pairs no exact method could compare (kcmp blocked).
    ``clean`` when nothing leaked; ``report()`` is the text pytest shows.
    """

    pid: int
    fds: tuple[LeakedFd, ...] = ()
    children: tuple[ChildHolder, ...] = ()
    undecided: tuple[Ref, ...] = ()

    @property
    def clean(self) -> bool:
        """Whether the block left no fd open and no child holding this process's files."""
        return not self.fds and not self.children

    def report(self, title: str | None = None) -> str:
        """A readable multi-line report; ``title`` names what was checked (a test)."""
        where = title if title is not None else f"process {self.pid}"
        if self.clean:
            return f"no fd leaks in {where}"
        lines = [f"fd leaks in {where}:"]
        for leak in self.fds:
            target = escape(leak.target)
            lines.append(f"  fd {leak.fd} ({leak.type}, {leak.mode}) {target}: {leak.what()}")
        for child in self.children:
            lines.append(
                f"  child process {child.pid} ({escape(child.command)}, parent {child.ppid}), "
                "started meanwhile, still holds:"
            )
            for d in child.descriptions:
                ours = ", ".join(str(m.fd) for m in d.members if m.pid == self.pid)
                theirs = ", ".join(str(m.fd) for m in d.members if m.pid == child.pid)
                target = escape(d.target)
                lines.append(f"    fd {ours} ({d.type}, {d.mode}) {target} as its fd {theirs}")
        if self.undecided:
            pairs = ", ".join(f"{p}:{f}" for p, f in self.undecided)
            lines.append(f"  undecided (kcmp blocked, no exact fallback): {pairs}")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.report()

    def to_dict(self) -> FdLeaksDict:
        """The result as a JSON document."""
        return {
            "schema_version": SCHEMA_VERSION,
            "pid": self.pid,
            "fds": [leak.to_dict() for leak in self.fds],
            "children": [c.to_dict() for c in self.children],
            "undecided": [{"pid": p, "fd": f} for p, f in self.undecided],
        }
