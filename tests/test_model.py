"""A property-based model of open file descriptions: random open, pipe, socketpair,
dup, dup2 and close, fds passed over SCM_RIGHTS to a helper process, and forks; the
model labels every fd with its description, and classify_fds and classify_files must
agree with it and with the ctypes baseline's brute-force pairwise answers.
"""

from __future__ import annotations

import contextlib
import os
import socket
import struct
import subprocess
import sys
from collections.abc import Iterator, Sequence

import kcmp_rs
import pytest
from _helpers import canonical, fd_snapshot, pairwise_groups, partition, spawned
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kcmp_rs import baseline

ME = os.getpid()

_RECEIVER = """
import os, socket, struct, sys
sock = socket.socket(fileno=int(sys.argv[1]))
held = []
while True:
    msg, fds, _, _ = socket.recv_fds(sock, 16, 4)
    if not msg:
        break
    if msg == b"R":
        for fd in held:
            os.close(fd)
        held.clear()
        sock.sendall(b"okay")
    else:
        held.extend(fds)
        sock.sendall(struct.pack("=i", fds[0]))
"""


class Receiver:
    """A helper process that keeps every fd sent to it over SCM_RIGHTS."""

    def __init__(self) -> None:
        ours, theirs = socket.socketpair()
        self.sock = ours
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _RECEIVER, str(theirs.fileno())], pass_fds=[theirs.fileno()]
        )
        theirs.close()
        self.pid = self.proc.pid

    def _reply(self) -> bytes:
        data = b""
        while len(data) < 4:
            chunk = self.sock.recv(4 - len(data))
            assert chunk, "the receiver died"
            data += chunk
        return data

    def send(self, fd: int) -> int:
        """Sends ``fd``; the number it got in the receiver."""
        socket.send_fds(self.sock, [b"S"], [fd])
        number: int = struct.unpack("=i", self._reply())[0]
        return number

    def reset(self) -> None:
        self.sock.sendall(b"R")
        assert self._reply() == b"okay"

    def close(self) -> None:
        self.sock.close()
        self.proc.wait(timeout=30)


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


_KINDS = ("open", "pipe", "socketpair", "dup", "dup", "dup2", "dup2", "close", "send", "fork")
_OPS = st.lists(
    st.tuples(st.sampled_from(_KINDS), st.integers(0, 63), st.integers(0, 63)),
    min_size=1,
    max_size=24,
)


class World:
    """Fds of this process, of the receiver and of forked children, each labelled with
    the open file description it refers to (labels are the model's truth)."""

    def __init__(
        self, receiver: Receiver, paths: Sequence[str], stack: contextlib.ExitStack
    ) -> None:
        self.receiver = receiver
        self.paths = paths
        self.stack = stack
        self.fds: dict[int, int] = {}
        self.sent: dict[int, int] = {}
        self.forks: list[tuple[int, dict[int, int]]] = []
        self.next_label = 0

    def _new(self, fd: int) -> None:
        self.fds[fd] = self.next_label
        self.next_label += 1

    def _pick(self, i: int) -> int | None:
        return sorted(self.fds)[i % len(self.fds)] if self.fds else None

    # Over the mccabe limit: one flat dispatch over the operations, clearer than a table.
    def apply(self, kind: str, a: int, b: int) -> None:  # noqa: C901
        src, dst = self._pick(a), self._pick(b)
        if kind == "open":
            self._new(os.open(self.paths[a % len(self.paths)], os.O_RDONLY))
        elif kind == "pipe":
            for fd in os.pipe():
                self._new(fd)
        elif kind == "socketpair":
            for s in socket.socketpair():
                self._new(s.detach())
        elif src is None or dst is None:
            return
        elif kind == "dup":
            self.fds[os.dup(src)] = self.fds[src]
        elif kind == "dup2" and src != dst:
            os.dup2(src, dst, inheritable=False)
            self.fds[dst] = self.fds[src]
        elif kind == "close":
            os.close(src)
            del self.fds[src]
        elif kind == "send":
            self.sent[self.receiver.send(src)] = self.fds[src]
        elif kind == "fork" and len(self.forks) < 2:
            child = self.stack.enter_context(spawned())
            self.forks.append((child.pid, dict(self.fds)))

    def labelled_refs(self) -> dict[tuple[int, int], int]:
        refs = {(ME, fd): label for fd, label in self.fds.items()}
        refs.update({(self.receiver.pid, fd): label for fd, label in self.sent.items()})
        for pid, fds in self.forks:
            refs.update({(pid, fd): label for fd, label in fds.items()})
        return refs

    def close(self) -> None:
        for fd in self.fds:
            os.close(fd)
        self.fds.clear()
        self.receiver.reset()


@pytest.fixture(scope="module")
def two_paths(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    base = tmp_path_factory.mktemp("model")
    paths = [str(base / "a"), str(base / "b")]
    for p in paths:
        with open(p, "w"):
            pass
    return paths


@settings(
    max_examples=200,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(ops=_OPS)
def test_model_of_descriptions(
    ops: list[tuple[str, int, int]], receiver: Receiver, two_paths: list[str]
) -> None:
    """Random open/pipe/socketpair/dup/dup2/close, SCM_RIGHTS to a helper process and
    forks: classify_fds and classify_files agree with the model's labels and with the
    ctypes baseline's brute-force pairwise answers."""
    with contextlib.ExitStack() as stack:
        world = World(receiver, two_paths, stack)
        stack.callback(world.close)
        for kind, a, b in ops:
            world.apply(kind, a, b)
        if not world.fds:
            return
        mine = sorted(world.fds)
        truth = partition(world.fds)
        assert canonical(kcmp_rs.classify_fds(ME, mine)) == truth
        assert canonical(kcmp_rs.classify_fds(ME, mine, order="kernel")) == truth
        assert baseline.partition_pairwise(ME, mine) == truth
        for pid, fds in world.forks:
            assert canonical(kcmp_rs.classify_fds(pid, sorted(fds))) == partition(fds)
        labelled = world.labelled_refs()
        refs_truth = partition(labelled)
        assert canonical(kcmp_rs.classify_files(list(labelled))) == refs_truth
        assert pairwise_groups(sorted(labelled)) == refs_truth


def test_model_left_no_fds_behind(receiver: Receiver) -> None:
    """After the model test (same module fixture), this process holds no fd of it."""
    before = fd_snapshot()
    receiver.reset()
    assert fd_snapshot() == before
