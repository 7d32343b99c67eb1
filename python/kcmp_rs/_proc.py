"""What the native /proc room reads, decoded for reports: which processes exist, what
fds point to (target, access mode, file type), command names.

Nothing here reads /proc: each function is one native call (``_native.list_pids``,
``describe_refs``, ``commands``), the GIL released. Placeholders ("?") stand for
what is gone: the callers report on many processes, any of which may exit under
them. Names come back as ``str`` decoded with ``os.fsdecode``, so ``os.fsencode``
gives the exact bytes back.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

from kcmp_rs import _native

__all__ = [
    "command_names",
    "decoded",
    "decoded_names",
    "list_pids",
    "read_command",
    "shown",
    "shown_one",
]


def decoded(name: bytes | None) -> str:
    """A name the native room read, as ``str`` (``os.fsdecode``); "?" once gone."""
    return "?" if name is None else os.fsdecode(name)


def decoded_names(pairs: Iterable[tuple[int, bytes | None]]) -> dict[int, str]:
    """``(pid, command name)`` pairs of a native answer as a dict of ``decoded`` names."""
    return {p: decoded(n) for p, n in pairs}


def list_pids() -> list[int]:
    """Every process in /proc, ascending."""
    return _native.list_pids()


def shown(refs: Iterable[tuple[int, int]]) -> list[tuple[str, str, str]]:
    """``(target, mode, type)`` of each ref, in order; target "?" once the fd is gone.

    ``mode``: "r", "w", "rw", "path" (O_PATH) or "?"; ``type``: "REG", "DIR", "CHR",
    "BLK", "FIFO", "SOCK", "LNK", an anon inode's name ("eventfd"), or "?".
    """
    return [(decoded(target), mode, kind) for target, mode, kind in _native.describe_refs(refs)]


def shown_one(pid: int, fd: int) -> tuple[str, str, str]:
    """``shown`` of one ref."""
    return shown([(pid, fd)])[0]


def command_names(pids: Iterable[int]) -> dict[int, str]:
    """The command name of each pid ("?" once it is gone)."""
    wanted = sorted(set(pids))
    names = _native.commands(wanted)
    return decoded_names(zip(wanted, names))


def read_command(pid: int) -> str:
    """The command name of ``pid`` ("?" once it is gone)."""
    return command_names([pid])[pid]
