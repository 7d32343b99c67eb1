"""The shapes of every ``to_dict()``, as ``TypedDict``s: the JSON the ``kcmp-rs``
commands print, for type checkers and for scripts that read it.

``schema_version`` (``SCHEMA_VERSION``) is in every document and in the first line of
JSON Lines output; it changes only when a field changes meaning or goes away. A field
ending in ``_bytes_b64`` is present only when the text beside it is not exact (a name
that is not UTF-8); ``boundary`` / ``boundaries`` only when a scan was asked for a
boundary (``scan(boundary=...)``, ``kcmp-rs scan --across``). Nothing here runs: this
module only declares.
"""

from __future__ import annotations

from typing import Literal, TypedDict

__all__ = [
    "ChildHolderDict",
    "ContainerDict",
    "DescriptionDict",
    "EpollTargetDict",
    "EscapeDict",
    "EscapesDict",
    "FdDict",
    "FdLeaksDict",
    "FileDescriptionDict",
    "HoldersDict",
    "LeakedFdDict",
    "MemberDict",
    "PairDict",
    "ScanDict",
    "SharedFilesDict",
    "SkippedDict",
    "WhoDict",
    "WhoFileDict",
]


class _MemberOptional(TypedDict, total=False):
    command_bytes_b64: str
    boundary: str  # only from a scan with a boundary (``--across``)


class MemberDict(_MemberOptional):
    """One fd of one process (a holder)."""

    pid: int
    fd: int
    command: str


class _DescriptionOptional(TypedDict, total=False):
    target_bytes_b64: str
    boundaries: list[str]  # only from a scan with a boundary (``--across``)


class DescriptionDict(_DescriptionOptional):
    """One open file description and its members."""

    type: str
    mode: str
    target: str
    members: list[MemberDict]


class SkippedDict(TypedDict):
    """A process that could not be read, and why."""

    pid: int
    reason: str


class FdDict(TypedDict):
    """A (pid, fd) pair, as in ``undecided``."""

    pid: int
    fd: int


class ChannelEndDict(TypedDict):
    """One end of a channel in a scan: its side and the indices of its descriptions."""

    side: str
    descriptions: list[int]


class ChannelDict(TypedDict):
    """``Channel.to_dict()``: one channel between processes (``kcmp-rs scan --ipc``)."""

    kind: str
    ends: list[ChannelEndDict]


class _ScanOptional(TypedDict, total=False):
    channels: list[ChannelDict]  # only from a scan with ipc (``--ipc``)
    channel_notes: list[str]  # the same


class ScanDict(_ScanOptional):
    """``Scan.to_dict()``: ``kcmp-rs scan -J``."""

    schema_version: int
    descriptions: list[DescriptionDict]
    skipped: list[SkippedDict]
    processes_read: int
    fds_classified: int
    undecided: list[FdDict]
    fd_table_shared: list[list[int]]


class EndDict(TypedDict):
    """``End.to_dict()``: one end of a channel, in ``EndpointsDict["ends"]``."""

    side: str
    descriptions: list[DescriptionDict]


class EndpointsDict(TypedDict):
    """``Endpoints.to_dict()``: ``kcmp-rs peers -J``."""

    schema_version: int
    pid: int
    fd: int
    kind: str
    target: str
    sides: list[str]
    ends: list[EndDict]
    peers: list[MemberDict]
    partial: str | None
    skipped: list[SkippedDict]
    undecided: list[FdDict]
    processes_read: int
    fd_table_shared: list[list[int]]


class HoldersDict(TypedDict):
    """``Holders.to_dict()``: ``kcmp-rs holders -J``."""

    schema_version: int
    pid: int
    fd: int
    description: DescriptionDict
    skipped: list[SkippedDict]
    undecided: list[FdDict]
    processes_read: int
    fds_compared: int
    fd_table_shared: list[list[int]]


class FileDescriptionDict(DescriptionDict):
    """``FileDescription.to_dict()``: a description of a file ``who()`` was asked about."""

    offset: int | None


class _WhoFileOptional(TypedDict, total=False):
    path_bytes_b64: str


class WhoFileDict(_WhoFileOptional):
    """``WhoFile.to_dict()``: one path asked about."""

    path: str
    device: int
    inode: int
    descriptions: list[FileDescriptionDict]


class WhoDict(TypedDict):
    """``Who.to_dict()``: ``kcmp-rs who -J``."""

    schema_version: int
    files: list[WhoFileDict]
    skipped: list[SkippedDict]
    processes_read: int
    undecided: list[FdDict]
    fd_table_shared: list[list[int]]


class PairDict(TypedDict):
    """The fds of each process on one description (or one file)."""

    fds1: list[int]
    fds2: list[int]


class SharedFilesDict(TypedDict):
    """``SharedFiles.to_dict()``."""

    schema_version: int
    pid1: int
    pid2: int
    same_fd_table: bool
    shared: list[PairDict]
    reopened: list[PairDict]
    undecided: list[FdDict]


class EpollTargetDict(TypedDict):
    """``EpollTarget.to_dict()``: one registration of an epoll set."""

    tfd: int
    index: int
    events: int
    data: int
    ino: int
    status: Literal["open", "closed", "reused"]
    holders: list[MemberDict]


class _LeakedFdBytes(TypedDict, total=False):
    target_bytes_b64: str


class LeakedFdDict(_LeakedFdBytes):
    """One leaked fd (``LeakedFd.to_dict()``)."""

    fd: int
    type: str
    mode: str
    target: str
    dup_of: int | None
    same_as: int | None
    reused: bool
    undecided: bool


class _ChildHolderBytes(TypedDict, total=False):
    command_bytes_b64: str


class ChildHolderDict(_ChildHolderBytes):
    """A child started during the checked block that holds this process's
    descriptions (``ChildHolder.to_dict()``)."""

    pid: int
    ppid: int
    command: str
    descriptions: list[DescriptionDict]


class FdLeaksDict(TypedDict):
    """``FdLeaks.to_dict()``: what a checked block left behind."""

    schema_version: int
    pid: int
    fds: list[LeakedFdDict]
    children: list[ChildHolderDict]
    undecided: list[FdDict]


class ContainerDict(TypedDict):
    """``Container.to_dict()``: the container a process runs in."""

    runtime: str
    id: str


class _EscapeBytes(TypedDict, total=False):
    command_bytes_b64: str
    path_bytes_b64: str
    mount_point_bytes_b64: str


class EscapeDict(_EscapeBytes):
    """``Escape.to_dict()``: one finding of the escape audit."""

    pid: int
    command: str
    where: int | str
    kind: str
    severity: str
    mnt_id: int
    fs_type: str | None
    path: str
    mount_point: str | None
    file_type: str
    mode: str | None
    container: ContainerDict | None
    mount_namespace: int
    shared_with: list[MemberDict]
    fs_shared_with: list[int] | None


class EscapesDict(TypedDict):
    """``Escapes.to_dict()``: the escape audit."""

    schema_version: int
    findings: list[EscapeDict]
    skipped: list[SkippedDict]
    processes_read: int
    mount_namespaces_read: int
    notes: list[str]
    counts: dict[str, int]
    found: int
    complete: bool
