"""What ``kcmp_rs.scan()`` returns: frozen dataclasses whose ``to_dict()`` is the JSON
``kcmp-rs scan -J`` prints (schema and name rules: ``help(kcmp_rs.scan)``).

Plain data: nothing here reads /proc or calls the native module, and this module
imports nothing else of the package.
"""

from __future__ import annotations

import binascii
from dataclasses import dataclass
from typing import TYPE_CHECKING, cast

if TYPE_CHECKING:
    from kcmp_rs._schema import DescriptionDict, MemberDict, ScanDict, SkippedDict

__all__ = [
    "EXITED",
    "NO_SUCH_PROCESS",
    "OWNER_EXITED",
    "PERMISSION_DENIED",
    "SCHEMA_VERSION",
    "ZOMBIE",
    "Description",
    "Member",
    "Ref",
    "Scan",
    "Skipped",
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


def _text_fields(name: str, text: str) -> dict[str, str]:
    """``{name: text}`` for JSON; a name not in UTF-8 also gets ``{name}_bytes_b64``
    (the rules are in ``help(kcmp_rs.scan)``)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raw = text.encode("utf-8", "surrogateescape")
        return {
            name: raw.decode("utf-8", "replace"),
            f"{name}_bytes_b64": binascii.b2a_base64(raw, newline=False).decode("ascii"),
        }
    return {name: text}


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
            **_text_fields("command", self.command),
        }
        if self.boundary is not None:
            doc["boundary"] = self.boundary
        return cast("MemberDict", doc)


@dataclass(frozen=True)
class Description:
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
            **_text_fields("target", self.target),
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
class Scan:
    """What ``scan()`` found. ``undecided`` lists the ``(pid, fd)`` pairs that could not
    be classified (kcmp blocked and no exact fallback); ``fd_table_shared`` the sets
    of pids that share one fd table, smallest (the one read) first."""

    descriptions: tuple[Description, ...]
    skipped: tuple[Skipped, ...]
    processes_read: int
    fds_classified: int
    undecided: tuple[Ref, ...] = ()
    fd_table_shared: tuple[tuple[int, ...], ...] = ()

    @property
    def shared(self) -> tuple[Description, ...]:
        """The descriptions held by more than one fd."""
        return tuple(d for d in self.descriptions if len(d.members) > 1)

    def to_dict(self) -> ScanDict:
        """The whole scan as the JSON document of ``kcmp-rs scan -J``."""
        return {
            "schema_version": SCHEMA_VERSION,
            "descriptions": [d.to_dict() for d in self.descriptions],
            "skipped": [s.to_dict() for s in self.skipped],
            "processes_read": self.processes_read,
            "fds_classified": self.fds_classified,
            "undecided": [{"pid": p, "fd": f} for p, f in self.undecided],
            "fd_table_shared": [list(g) for g in self.fd_table_shared],
        }
