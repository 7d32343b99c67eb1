"""``escapes()``: the escape audit. Each fd, cwd and root of a process on a mount its own
mount namespace does not have (a host directory's fd leaked into a container: the
shape of CVE-2024-21626), on a mount no mountinfo lists any more (lazily unmounted),
or outside its root (chroot).

One native pass (``_native.escapes``) reads and decides everything; this module only
presents it (``Escape``, ``Escapes``, ``Container``).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from typing import SupportsIndex, cast

from kcmp_rs import _native
from kcmp_rs._proc import decoded, list_pids
from kcmp_rs._results import SCHEMA_VERSION, Member, Skipped
from kcmp_rs._scan import _checked_pids
from kcmp_rs._schema import ContainerDict, EscapeDict, EscapesDict
from kcmp_rs._text import text_fields

__all__ = ["Container", "Escape", "Escapes", "escapes"]

#: ``Escape.severity`` values, most severe first; ``info`` is not counted in ``found``.
SEVERITIES = ("high", "medium", "info")


@dataclass(frozen=True)
class Container:
    """The container a process runs in, read from its cgroup path: ``runtime``
    (``"podman"``, ``"docker"``, ``"containerd"``, ``"cri-o"``,
    ``"systemd-nspawn"``) and ``id`` (the container's id, or the machine's name for
    systemd-nspawn)."""

    runtime: str
    id: str

    def to_dict(self) -> ContainerDict:
        """The container as a JSON object: ``runtime``, ``id``."""
        return {"runtime": self.runtime, "id": self.id}


@dataclass(frozen=True)
class Escape:
    """One file a process holds outside its mount namespace or root.

    ``where``: the fd number, ``"cwd"`` or ``"root"``. ``kind``:
    ``"outside-namespace"`` (a mount of another mount namespace: ours or another
    audited one), ``"detached"`` (a mount in no mountinfo read: lazily unmounted, or
    of a namespace not read), ``"outside-root"`` (a file of its own namespace outside
    its root, for a process whose root is not "/") or ``"device"`` (a character or
    block device on such a mount, as ``podman exec`` gives the host's /dev/null).
    ``severity``: ``"high"`` for a directory or a file open for writing, ``"medium"``
    for another file, ``"info"`` for a device. ``mnt_id``: the mount's id;
    ``fs_type``: from the mountinfo that lists it (None: none does); ``path``: the
    file as this process reads the link; ``mount_point``: the mount's mount point in
    this process's namespace (None: not one of its mounts). ``file_type`` as a
    ``Description`` names it (``"DIR"``, ``"REG"``, ``"CHR"``, ...); ``mode``: the
    fd's access mode (``"r"``, ``"w"``, ``"rw"``, ``"path"`` for O_PATH), None for
    cwd and root. ``container``: from the process's cgroup, None outside one;
    ``mount_namespace``: the inode of its mount namespace. ``shared_with``: the
    holders of the same open file description in other mount namespaces (among the
    processes audited; not searched for a device); ``fs_shared_with``: the audited
    processes of another mount namespace sharing its fs context (root, cwd), None
    where that cannot be decided (kcmp unusable: ``Escapes.notes`` says so) or is not
    asked (a process whose findings are all devices).
    """

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
    container: Container | None
    mount_namespace: int
    shared_with: tuple[Member, ...]
    fs_shared_with: tuple[int, ...] | None

    def to_dict(self) -> EscapeDict:
        """The finding as a JSON object (names that are not UTF-8 as in ``scan()``)."""
        doc: dict[str, object] = {
            "pid": self.pid,
            **text_fields("command", self.command),
            "where": self.where,
            "kind": self.kind,
            "severity": self.severity,
            "mnt_id": self.mnt_id,
            "fs_type": self.fs_type,
            **text_fields("path", self.path),
            "mount_point": self.mount_point,
            "file_type": self.file_type,
            "mode": self.mode,
            "container": None if self.container is None else self.container.to_dict(),
            "mount_namespace": self.mount_namespace,
            "shared_with": [m.to_dict() for m in self.shared_with],
            "fs_shared_with": None if self.fs_shared_with is None else list(self.fs_shared_with),
        }
        if self.mount_point is not None:
            doc.update(text_fields("mount_point", self.mount_point))
        return cast("EscapeDict", doc)


@dataclass(frozen=True)
class Escapes:
    """What ``escapes()`` found: ``findings`` sorted by pid, then fds ascending, then
    cwd, then root; ``skipped`` the processes that could not be read, with why (as in
    ``scan()``); ``notes`` what could not be decided."""

    findings: tuple[Escape, ...]
    skipped: tuple[Skipped, ...]
    processes_read: int
    mount_namespaces_read: int
    notes: tuple[str, ...] = ()

    @property
    def complete(self) -> bool:
        """Whether every process was read and everything decided."""
        return not self.skipped and not self.notes

    @property
    def found(self) -> int:
        """The number of findings of severity ``high`` or ``medium``."""
        return sum(1 for f in self.findings if f.severity != "info")

    def counts(self) -> dict[str, int]:
        """The number of findings per severity: ``{"high": n, "medium": n, "info": n}``."""
        return {s: sum(1 for f in self.findings if f.severity == s) for s in SEVERITIES}

    def to_dict(self) -> EscapesDict:
        """The answer as one JSON document."""
        return {
            "schema_version": SCHEMA_VERSION,
            "findings": [f.to_dict() for f in self.findings],
            "skipped": [s.to_dict() for s in self.skipped],
            "processes_read": self.processes_read,
            "mount_namespaces_read": self.mount_namespaces_read,
            "notes": list(self.notes),
            "counts": self.counts(),
            "found": self.found,
            "complete": self.complete,
        }


def _text(name: bytes | None) -> str | None:
    return None if name is None else os.fsdecode(name)


def escapes(pids: Iterable[SupportsIndex] | None = None) -> Escapes:
    """The escape audit of ``pids`` (None: every process in /proc): for each process,
    each fd, its cwd and its root on a mount that is not one of its own mount
    namespace's, and each file outside its root; with who else holds each finding's
    open file description from another mount namespace.

    A mount is told by its id (fdinfo ``mnt_id``; statx for cwd and root) against
    the ids of the namespace's mountinfo, read once per namespace. Files on the
    kernel's internal mounts (pipes, sockets, anon inodes, memfds, pidfds,
    namespaces) are never findings. Processes are pinned as ``scan()`` pins them;
    one that cannot be read, exits during the call, or whose mount namespace vanishes
    before its mountinfo is read is in ``skipped`` with why, never a shorter answer.
    One native pass, the GIL released; Ctrl-C stops it.

    Returns ``Escapes``. Raises TypeError or ValueError for bad ``pids`` (as
    ``scan()``), ``OSError`` when this process's own mountinfo cannot be read.
    """
    wanted = list_pids() if pids is None else _checked_pids(pids)
    rows, processes, commands, skipped, read, namespaces, notes = _native.escapes(wanted)
    names = {p: decoded(n) for p, n in commands.items()}
    findings = []
    for pid, where, kind, severity, mnt_id, fs_type, path, point, ftype, mode, shared in rows:
        command, container, namespace, fs_shared = processes[pid]
        findings.append(
            Escape(
                pid=pid,
                command=decoded(command),
                where=where,
                kind=kind,
                severity=severity,
                mnt_id=mnt_id,
                fs_type=_text(fs_type),
                path=os.fsdecode(path),
                mount_point=_text(point),
                file_type=ftype,
                mode=mode,
                container=None if container is None else Container(*container),
                mount_namespace=namespace,
                shared_with=tuple(Member(p, fd, names.get(p, "?")) for p, fd in shared),
                fs_shared_with=None if fs_shared is None else tuple(fs_shared),
            )
        )
    return Escapes(
        tuple(findings),
        tuple(Skipped(p, why) for p, why in skipped),
        read,
        namespaces,
        tuple(notes),
    )
