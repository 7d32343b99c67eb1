"""Fd sets for the classify tests: ``FdSet`` opens fds of many kinds by steps and closes
every one again; ``scratch_files`` makes the files it opens."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

__all__ = ["FdSet", "scratch_files"]


def scratch_files(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Two regular files and /dev/null: separate opens of one inode are the hard case."""
    d = tmp_path_factory.mktemp("classify")
    paths = [d / "a", d / "b"]
    for p in paths:
        p.write_bytes(b"x")
    return [*paths, Path("/dev/null")]


class FdSet:
    """Fds this test opened: tracked so every one is closed again, whatever happens."""

    def __init__(self, files: list[Path]) -> None:
        self.files = files
        self.owned: set[int] = set()
        self.closed: set[int] = set()

    def _add(self, *fds: int) -> None:
        for fd in fds:
            self.owned.add(fd)
            self.closed.discard(fd)

    def pick(self, i: int) -> int | None:
        fds = sorted(self.owned)
        return fds[i % len(fds)] if fds else None

    def do(self, kind: str, a: int, b: int) -> None:
        """One step: ``a`` and ``b`` pick files or existing fds."""
        src = self.pick(a)
        if kind == "open":
            self._add(os.open(self.files[a % len(self.files)], os.O_RDONLY | os.O_CLOEXEC))
        elif kind == "opath":
            self._add(os.open(self.files[a % len(self.files)], os.O_PATH | os.O_CLOEXEC))
        elif kind == "pipe":
            self._add(*os.pipe())
        elif kind == "socketpair":
            s1, s2 = socket.socketpair()
            self._add(s1.detach(), s2.detach())
        elif kind == "memfd":
            self._add(os.memfd_create("kcmp-test", os.MFD_CLOEXEC))
        elif kind == "eventfd":
            self._add(os.eventfd(0, os.EFD_CLOEXEC))
        elif kind == "dup" and src is not None:
            self._add(os.dup(src))
        elif kind == "dup2" and src is not None:
            dst = self.pick(b)
            assert dst is not None
            os.dup2(src, dst)  # replaces one of our own fds only
        elif kind == "close" and src is not None:
            os.close(src)
            self.owned.discard(src)
            self.closed.add(src)

    def close_all(self) -> None:
        for fd in self.owned:
            os.close(fd)
        self.owned.clear()

    def __enter__(self) -> FdSet:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close_all()
