"""The process family of ``kcmp_rs._example`` with what only the tests and benchmarks
use: file names built to break a terminal (``hostile_names``), the members' command
name, and a ``Family`` that answers for each fd (mode, target, pipe ends that must stay
apart) and can kill one member mid-scan.

The benchmarks import this module too (``benches/conftest.py`` puts ``tests/`` on
``sys.path``), for families of up to 1000 processes x 200 fds.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

from kcmp_rs import _example
from kcmp_rs._example import COMMAND, MIN_FDS, OPEN_MODES

__all__ = ["HOSTILE_NAME", "MIN_FDS", "Family", "build_family"]

Ref = tuple[int, int]

#: With ``hostile_names=True``, every file name starts with these bytes: a newline, a
#: terminal escape sequence and a byte that is not UTF-8.
HOSTILE_NAME = b"evil\n\x1b[31mred\xff-"

_MODE_NAMES = {os.O_RDONLY: "r", os.O_WRONLY: "w", os.O_RDWR: "rw"}
_FIXED_MODES = {"devnull": "rw", "lifeline": "r", "pair": "rw", "passed": "rw", "sock0": "rw",
                "sock1": "rw", "pipe-r": "r", "pipe-w": "w"}  # fmt: skip


def _label_mode(label: str) -> str:
    kind, _, rest = label.partition(":")
    if kind == "private":
        return _MODE_NAMES[OPEN_MODES[int(rest.split(":")[1]) % 3]]
    return _FIXED_MODES[kind]


@dataclass(frozen=True, eq=False)
class Family(_example.Family):
    """``kcmp_rs._example.Family`` with the truth about each fd, and ``kill``."""

    _gone: set[int] = field(default_factory=set, repr=False)

    @property
    def apart(self) -> list[tuple[Ref, Ref]]:
        """Pairs of fds in different processes that must NOT be found shared (the two
        ends of a pipe)."""
        where = {label: ref for ref, label in self.labels.items()}
        return [
            (where[label], where["pipe-w" + label[len("pipe-r") :]])
            for label in sorted(where)
            if label.startswith("pipe-r:")
        ]

    def refs(self, pid: int) -> list[Ref]:
        """Every (pid, fd) of one member, ascending."""
        return sorted(ref for ref in self.labels if ref[0] == pid)

    def mode(self, ref: Ref) -> str:
        """The access mode of an fd: "r", "w" or "rw"."""
        return _label_mode(self.labels[ref])

    def target(self, ref: Ref) -> bytes | None:
        """What ``readlink /proc/PID/fd/N`` gives for a file fd (None for pipes and
        sockets)."""
        kind, _, rest = self.labels[ref].partition(":")
        if kind == "devnull":
            return os.fsencode(os.devnull)
        if kind not in ("pair", "passed", "private"):
            return None
        number = rest.split(":")[0]
        return os.path.join(os.fsencode(self.directory), self.prefix + f"{kind}-{number}".encode())

    def kill(self, pid: int, timeout: float = 10.0) -> None:
        """Kills one member and waits until it is gone from /proc (a test making a
        process exit mid-scan). Safe from pid reuse: a member is not reaped before it
        dies, and ``kill`` sends no second signal."""
        if pid in self._gone or pid not in self.pids:
            return
        self._gone.add(pid)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + timeout
        while os.path.exists(f"/proc/{pid}") and time.monotonic() < deadline:
            time.sleep(0.002)


@contextlib.contextmanager
def build_family(
    n_procs: int = 4,
    fds_per_proc: int = MIN_FDS,
    *,
    hostile_names: bool = False,
    command: bytes = COMMAND,
) -> Iterator[Family]:
    """``kcmp_rs._example.build_family``, yielding the tests' ``Family``.

    ``hostile_names``: file names start with ``HOSTILE_NAME``. ``command``: the
    members' command name (comm: 15 bytes at most; default ``kcmp-family``).
    """
    prefix = HOSTILE_NAME if hostile_names else b""
    with _example.build_family(n_procs, fds_per_proc, prefix=prefix, command=command) as built:
        yield Family(built.pids, built.directory, built.command, built.labels, built.prefix)
