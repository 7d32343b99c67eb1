"""Which side of a boundary a process is on: its namespace of one kind, or its cgroup.

The scan's boundary audit (``scan(boundary=KIND)``, ``kcmp-rs scan --across KIND``)
asks this module for one value per process and compares the values of a
description's holders: two holders are on the same side when their values are equal.

- Namespaces (``pid``, ``mnt``, ``net``, ``user``, ``ipc``, ``uts``, lsns's names): the
  link text of ``/proc/PID/ns/KIND``, e.g. ``net:[4026531833]``. The number is the
  namespace's inode, unique on the host while the namespace lives.
- ``cgroup``: the process's cgroup as ``/proc/PID/cgroup`` shows it. Where the file has
  a cgroup v2 line (``0::PATH``, unified and hybrid hosts) the value is that path;
  on a host with only cgroup v1 hierarchies it is every line without its hierarchy
  number, in the file's order, joined with ``;`` (``cpu,cpuacct:/a;memory:/a``).

The values are read by the native /proc room (``_native.boundary_value``, which the
scan uses too), one file at a time. A value that cannot be read raises OSError
naming the pid: the caller decides what the process counts as.
"""

from __future__ import annotations

import os

from kcmp_rs import _native

__all__ = ["KINDS", "Boundaries", "check_kind", "in_cgroup"]

#: The boundary kinds, in the order messages list them.
KINDS = ("pid", "mnt", "net", "user", "ipc", "uts", "cgroup")


def check_kind(value: object) -> str | None:
    """``value`` as a boundary kind (or None), refused with scan's message style."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise TypeError(f"boundary must be a str or None, not {type(value).__name__}")
    if value not in KINDS:
        names = ", ".join(repr(k) for k in KINDS)
        raise ValueError(f"boundary must be one of {names} or None, got {value!r}")
    return value


def in_cgroup(value: str, path: str) -> bool:
    """Whether a cgroup value lies at ``path`` or below it (a v1 value: any of its
    hierarchies does)."""
    top = path.rstrip("/") or "/"
    paths = [value] if value.startswith("/") else [p.partition(":")[2] for p in value.split(";")]
    return any(p == top or top == "/" or p.startswith(top + "/") for p in paths)


class Boundaries:
    """The boundary values of one kind, each process's read once and kept."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._values: dict[int, str] = {}

    def value(self, pid: int) -> str:
        """The value of ``pid``; OSError if it cannot be read (gone, denied)."""
        known = self._values.get(pid)
        if known is not None:
            return known
        found = os.fsdecode(_native.boundary_value(pid, self.kind))
        self._values[pid] = found
        return found
