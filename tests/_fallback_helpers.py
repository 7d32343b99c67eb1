"""Helpers for ``test_fallback.py``: fd mixes and outcomes as data.

- ``FdMix``: opens a named mix of fds (pipes, dups, socketpairs, eventfds, FIFOs and
  regular files opened several times, /dev/null) and says which of them the epoll
  rung can decide (pollable files) and which it cannot.
- ``attempt(func, ...)``: calls ``func`` and returns what happened as an ``Outcome``
  (value, or the exception's class, errno, message, reason and undecided refs), with
  the fds the call left open or closed in this process: a child reports many calls
  as plain data (JSON-able, so a subprocess can print them), and the parent checks
  them. (``_checks.outcome`` is the other form: it keeps the exception object itself,
  for checks of its exact class and attributes after pickling.)
- ``subprocess_main``: run as a script (``python _fallback_helpers.py SPEC``), it
  optionally installs the seccomp filter, then imports kcmp_rs (so the import reads
  KCMP_RS_NO_KCMP from this environment) and prints one JSON line per call.

The brute-force truth (``pairwise_groups``) and ``canonical`` are in ``_helpers.py``.
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import json
import os
import random
import socket
import sys
import tempfile
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from _helpers import dup_at_least, fd_snapshot, libc

__all__ = [
    "FdMix",
    "Outcome",
    "attempt",
    "open_eventfd",
    "subprocess_main",
]

Ref = tuple[int, int]


# ---- outcomes ----


@dataclasses.dataclass(frozen=True)
class Outcome:
    """One call, as data: its value or its exception, and what it did to our fd table."""

    value: Any = None
    error: str | None = None  # the exception's class name
    classes: tuple[str, ...] = ()  # "module.QualName" of every class in its MRO
    errno: int | None = None
    message: str = ""
    reason: str = ""
    undecided: tuple[Ref, ...] = ()
    leaked: tuple[tuple[int, str], ...] = ()  # fds open after the call, not before
    lost: tuple[tuple[int, str], ...] = ()  # fds open before the call, not after

    @property
    def ok(self) -> bool:
        return self.error is None

    def describe(self) -> str:
        if self.ok:
            return f"returned {self.value!r}"
        return f"raised {self.error} (errno {self.errno}): {self.message}"

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Outcome:
        def pairs(items: Iterable[Sequence[Any]]) -> tuple[Any, ...]:
            return tuple(tuple(p) for p in items)

        return cls(
            value=data["value"],
            error=data["error"],
            classes=tuple(data["classes"]),
            errno=data["errno"],
            message=data["message"],
            reason=data["reason"],
            undecided=pairs(data["undecided"]),
            leaked=pairs(data["leaked"]),
            lost=pairs(data["lost"]),
        )


def attempt(func: Callable[..., Any], *args: Any, **kwargs: Any) -> Outcome:
    """Calls ``func``; returns its value or its exception as an ``Outcome``."""
    before = fd_snapshot()
    try:
        value = func(*args, **kwargs)
    except Exception as exc:
        after = fd_snapshot()
        undecided = getattr(exc, "undecided", ())
        if not isinstance(undecided, tuple) or not all(
            isinstance(r, tuple) and len(r) == 2 for r in undecided
        ):
            raise AssertionError(f"undecided is not a tuple of (pid, fd): {undecided!r}") from exc
        return Outcome(
            error=type(exc).__name__,
            classes=tuple(f"{c.__module__}.{c.__qualname__}" for c in type(exc).__mro__),
            errno=getattr(exc, "errno", None),
            message=str(exc),
            reason=str(getattr(exc, "reason", "")),
            undecided=tuple((int(p), int(f)) for p, f in undecided),
            leaked=tuple(sorted(after - before)),
            lost=tuple(sorted(before - after)),
        )
    after = fd_snapshot()
    return Outcome(
        value=value,
        leaked=tuple(sorted(after - before)),
        lost=tuple(sorted(before - after)),
    )


# ---- fd mixes ----

_EFD_CLOEXEC = 0o2000000


def open_eventfd() -> int:
    """An eventfd: ``os.eventfd`` on 3.10+, libc's on 3.9. OSError if unavailable."""
    make = getattr(os, "eventfd", None)
    if make is not None:
        return int(make(0, _EFD_CLOEXEC))
    fd = int(libc.eventfd(0, _EFD_CLOEXEC))
    if fd < 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))
    return fd


class FdMix:
    """Named fds of this process, each remembered as pollable or not.

    ``pollable`` fds (pipes, sockets, eventfds, FIFOs) can be told apart by the epoll
    rung; regular files and /dev/null cannot. Close with ``close()``.
    """

    def __init__(self) -> None:
        self.fds: dict[str, int] = {}
        self.pollable: set[str] = set()
        self._dir = tempfile.mkdtemp(prefix="kcmp_rs_fallback_")
        self._paths: list[str] = []

    def _add(self, name: str, fd: int, pollable: bool) -> int:
        assert name not in self.fds, name
        self.fds[name] = fd
        if pollable:
            self.pollable.add(name)
        return fd

    def pipe(self, name: str) -> None:
        r, w = os.pipe()
        self._add(f"{name}.r", r, True)
        self._add(f"{name}.w", w, True)

    def socketpair(self, name: str) -> None:
        a, b = socket.socketpair()
        self._add(f"{name}.a", a.detach(), True)
        self._add(f"{name}.b", b.detach(), True)

    def eventfd(self, name: str) -> bool:
        try:
            fd = open_eventfd()
        except (OSError, AttributeError):
            return False
        self._add(name, fd, True)
        return True

    def fifo(self, name: str, opens: int = 2) -> None:
        """A FIFO opened ``opens`` times: one inode, separate descriptions, pollable."""
        path = os.path.join(self._dir, name)
        os.mkfifo(path)
        self._paths.append(path)
        for i in range(opens):
            self._add(f"{name}.{i}", os.open(path, os.O_RDWR | os.O_CLOEXEC), True)

    def regular(self, name: str, opens: int = 2) -> None:
        """A regular file opened ``opens`` times (epoll refuses regular files)."""
        path = os.path.join(self._dir, name)
        with open(path, "wb") as f:
            f.write(b"kcmp_rs")
        self._paths.append(path)
        for i in range(opens):
            self._add(f"{name}.{i}", os.open(path, os.O_RDONLY | os.O_CLOEXEC), False)

    def regular_in_modes(self, name: str) -> None:
        """A regular file opened read-only, write-only and read-write, twice each, and a
        dup of each first open (``NAME.ro.0``, ``NAME.wo.1``, ``NAME.rw.0+``, ...)."""
        path = self.path(name)
        with open(path, "wb") as f:
            f.write(b"kcmp_rs")
        for mode, flag in [("ro", os.O_RDONLY), ("wo", os.O_WRONLY), ("rw", os.O_RDWR)]:
            for i in range(2):
                self._add(f"{name}.{mode}.{i}", os.open(path, flag | os.O_CLOEXEC), False)
            self.dup(f"{name}.{mode}.0+", f"{name}.{mode}.0")

    def path(self, name: str) -> str:
        """A path in the mix's directory, removed with it."""
        path = os.path.join(self._dir, name)
        self._paths.append(path)
        return path

    def devnull(self, name: str, opens: int = 2) -> None:
        for i in range(opens):
            self._add(f"{name}.{i}", os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC), False)

    def dup(self, name: str, of: str, at_least: int = 0) -> None:
        """Another fd for the description behind ``of`` (at or above ``at_least``)."""
        fd = self.fds[of]
        new = os.dup(fd) if at_least == 0 else dup_at_least(fd, at_least)
        self._add(name, new, of in self.pollable)

    def names(self, *, pollable_only: bool = False) -> list[str]:
        return sorted(
            (n for n in self.fds if not pollable_only or n in self.pollable),
            key=self.fds.__getitem__,
        )

    def fd_list(self, names: Iterable[str] | None = None) -> list[int]:
        return sorted(self.fds[n] for n in (self.fds if names is None else names))

    def close(self) -> None:
        for fd in self.fds.values():
            with contextlib.suppress(OSError):
                os.close(fd)
        self.fds.clear()
        self.unlink()

    def unlink(self) -> None:
        """Removes the FIFOs and files from the file system (their fds stay open)."""
        for path in self._paths:
            with contextlib.suppress(OSError):
                os.unlink(path)
        self._paths.clear()
        with contextlib.suppress(OSError):
            os.rmdir(self._dir)

    # ---- the mixes the tests use ----

    @classmethod
    def standard(cls) -> FdMix:
        """Dups, separate opens, pipes, socketpairs, eventfds, FIFOs, regular files,
        /dev/null, plus a regular file and a /dev/null fd alone on their inodes."""
        mix = cls()
        mix.pipe("p1")
        mix.dup("p1.r+", "p1.r")
        mix.pipe("p2")
        mix.dup("p2.w+", "p2.w")
        mix.dup("p2.w++", "p2.w")
        mix.socketpair("s1")
        mix.dup("s1.a+", "s1.a")
        mix.socketpair("s2")
        if mix.eventfd("ev1"):
            mix.eventfd("ev2")
            mix.dup("ev1+", "ev1")
        mix.fifo("fifo", opens=3)
        mix.dup("fifo.1+", "fifo.1")
        mix.regular("file", opens=2)
        mix.dup("file.0+", "file.0")
        mix.devnull("null", opens=2)
        mix.regular("solo", opens=1)
        return mix

    @classmethod
    def random_pollable(cls, rng: random.Random, size: int = 24) -> FdMix:
        """A random mix of pollable fds: pipes, socketpairs, eventfds and FIFOs, each
        with random dups, some placed at high fd numbers so fd order != open order."""
        mix = cls()
        n = 0
        while len(mix.fds) < size:
            n += 1
            kind = rng.choice(["pipe", "socketpair", "eventfd", "fifo"])
            if kind == "pipe":
                mix.pipe(f"p{n}")
            elif kind == "socketpair":
                mix.socketpair(f"s{n}")
            elif kind == "eventfd":
                if not mix.eventfd(f"e{n}"):
                    mix.pipe(f"p{n}")
            else:
                mix.fifo(f"f{n}", opens=rng.randint(1, 3))
            for name in rng.sample(mix.names(), k=min(len(mix.fds), rng.randint(0, 2))):
                at_least = rng.choice([0, 0, rng.randint(100, 400)])
                mix.dup(f"{name}+{len(mix.fds)}", name, at_least)
        return mix


# ---- the KCMP_RS_NO_KCMP subprocess ----


def _jsonable(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {k: _jsonable(v) for k, v in dataclasses.asdict(value).items()}
    if isinstance(value, int) and not isinstance(value, bool):
        return int(value)
    return value


def subprocess_main(argv: Sequence[str]) -> int:
    """``python _fallback_helpers.py SPEC``: SPEC is JSON with ``kill`` (install the
    kill-on-kcmp filter before importing kcmp_rs), ``fds`` (own fds to classify,
    inherited from the test), ``other`` ((pid, fd) refs of another process),
    ``gone_fd`` (an fd number not open in that process), optionally ``steps`` (the names
    of the steps to run; default all). Prints one JSON line per step,
    flushed, so a parent can tell how far it got if the process is killed."""
    spec = json.loads(argv[0])

    def say(step: str, outcome: Outcome | None = None) -> None:
        line: dict[str, Any] = {"step": step}
        if outcome is not None:
            data = outcome.to_json()
            data["value"] = _jsonable(data["value"])
            line["outcome"] = data
        print(json.dumps(line), flush=True)

    if spec["kill"]:
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        from _seccomp import install_filter

        install_filter(("kill",))
        say("filtered")
    import kcmp_rs

    say("imported")
    me = os.getpid()
    fds: list[int] = spec["fds"]
    other = [tuple(r) for r in spec["other"]]
    pid = other[0][0]
    steps: list[tuple[str, Callable[[], Any]]] = [
        ("support", kcmp_rs.support),
        ("support_refresh", lambda: kcmp_rs.support(refresh=True)),
        ("classify_fds", lambda: kcmp_rs.classify_fds(me, fds)),
        ("classify_fds_kernel", lambda: kcmp_rs.classify_fds(me, fds, order="kernel")),
        ("same_file_own", lambda: kcmp_rs.same_file(me, fds[0], me, fds[1])),
        ("kcmp", lambda: kcmp_rs.kcmp(me, me, kcmp_rs.KcmpType.VM)),
        ("kcmp_file", lambda: kcmp_rs.kcmp(me, me, kcmp_rs.KcmpType.FILE, fds[0], fds[0])),
        ("same_vm", lambda: kcmp_rs.same_vm(me, pid)),
        ("classify_tasks", lambda: kcmp_rs.classify_tasks([me, pid], kcmp_rs.KcmpType.VM)),
        ("classify_files_other", lambda: kcmp_rs.classify_files(other)),
        (
            "classify_files_other_getfd",
            lambda: kcmp_rs.classify_files(other, allow_pidfd_getfd=True),
        ),
        ("same_file_other", lambda: kcmp_rs.same_file(*other[0], *other[1])),
        (
            "same_file_other_getfd",
            lambda: kcmp_rs.same_file(*other[0], *other[1], allow_pidfd_getfd=True),
        ),
        (
            "classify_files_gone",
            lambda: kcmp_rs.classify_files(
                [*other, (pid, spec["gone_fd"])], allow_pidfd_getfd=True, missing="skip"
            ),
        ),
    ]
    wanted = spec.get("steps")
    for step, call in steps:
        if wanted is None or step in wanted:
            say(step, attempt(call))
    say("done")
    return 0


if __name__ == "__main__":
    sys.exit(subprocess_main(sys.argv[1:]))
