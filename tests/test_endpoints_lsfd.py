"""``endpoints()`` against util-linux 2.41's lsfd (its ENDPOINTS column), run from the
Debian 13 chroot ``make lsfd-root`` caches, over a family of processes holding every
kind of channel: for every fd of the family, the (pid, fd) lsfd lists equal
``Endpoints.peers`` (which follows lsfd's definition: ``tests/_lsfd.py``), and an fd
lsfd lists nothing for is either no channel or one whose other ends are outside the
family. The description split, which lsfd cannot show, is checked against kcmp pair
by pair."""

from __future__ import annotations

import ctypes
import os
import pty
import socket
import threading
from pathlib import Path

import kcmp_rs
import pytest
from _checks import needs_kcmp
from _fallback_helpers import open_eventfd
from _helpers import Spawn, canonical, pairwise_groups
from _lsfd import endpoints_by_fd, require_lsfd

Ref = tuple[int, int]


def _in_new_netns() -> dict[str, int]:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(0x40000000) != 0:  # CLONE_NEWNET
        raise OSError(ctypes.get_errno(), "unshare(CLONE_NEWNET)")
    a, b = socket.socketpair()
    return {"a": a.detach(), "b": b.detach()}


def _listener_with_connections(name: str) -> dict[str, int]:
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(name)
    listener.listen(4)
    clients = [socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) for _ in range(3)]
    for c in clients:
        c.connect(name)
    accepted = [listener.accept()[0] for _ in range(2)]  # the third stays pending
    keep = [listener, *clients, *accepted]
    return {f"fd{i}": s.detach() for i, s in enumerate(keep)}


def _with_a_thread() -> dict[str, int]:
    r, w = os.pipe()
    threading.Thread(target=os.read, args=(r, 1), daemon=True).start()
    return {"r": r, "w": w}


def family(spawn: Spawn, tmp: Path) -> list[int]:
    """Children holding pipes, a FIFO, Unix sockets (passed, in another network
    namespace, listening), a pty and eventfds; this process keeps none of them."""
    fifo = tmp / "fifo"
    os.mkfifo(fifo)
    r, w = os.pipe()
    master, slave = pty.openpty()
    slave_name = os.ttyname(slave)
    os.close(slave)
    event = open_eventfd()
    a, b = socket.socketpair()
    carrier, far = socket.socketpair()
    socket.send_fds(carrier, [b"x"], [b.fileno()])
    b.close()
    try:

        def first_setup() -> dict[str, int]:
            os.close(w)  # the pipe's writer stays in the third child alone
            return {"rw": os.open(fifo, os.O_RDWR)}

        def second_setup() -> dict[str, int]:
            os.close(w)
            return {
                "reader": os.open(fifo, os.O_RDONLY | os.O_NONBLOCK),
                "reopened": os.open(f"/proc/self/fd/{r}", os.O_RDONLY),
                "passed": socket.recv_fds(far, 1, 1)[1][0],
            }

        first = spawn(first_setup)
        second = spawn(second_setup)
        third = spawn(
            lambda: {
                "writer": os.open(fifo, os.O_WRONLY | os.O_NONBLOCK),
                "slave": os.open(slave_name, os.O_RDWR | os.O_NOCTTY),
                "own_event": open_eventfd(),
                "event_dup": os.dup(event),
            }
        )
        others = [
            spawn(_in_new_netns),
            spawn(lambda: _listener_with_connections(f"\0kcmp-rs-lsfd-{os.getpid()}")),
            spawn(_with_a_thread),
        ]
    finally:
        for fd in (r, w, master, event):
            os.close(fd)
        for s in (a, carrier, far):
            s.close()
    return [first.pid, second.pid, third.pid, *(c.pid for c in others)]


def fds_of(pid: int) -> list[int]:
    return sorted(int(n) for n in os.listdir(f"/proc/{pid}/fd"))


@needs_kcmp
def test_every_fd_of_the_family_agrees_with_lsfd(spawn: Spawn, tmp_path: Path) -> None:
    require_lsfd()
    if os.geteuid() != 0:
        pytest.skip("the family's new network namespace needs root")
    pids = family(spawn, tmp_path)
    theirs = endpoints_by_fd(pids)
    disagree: list[str] = []
    kinds: set[str] = set()
    for pid in pids:
        for fd in fds_of(pid):
            listed = theirs.get((pid, fd), [])
            try:
                found = kcmp_rs.endpoints(pid, fd, pids)
            except kcmp_rs.NotAChannelError as err:
                if listed:
                    disagree.append(f"{pid},{fd} ({err.file_type}): lsfd lists {listed}")
                continue
            kinds.add(found.kind)
            ours = sorted((m.pid, m.fd) for m in found.peers)
            if ours != listed:
                disagree.append(f"{pid},{fd} ({found.kind}): ours {ours}, lsfd {listed}")
            assert found.complete, (pid, fd, found.partial, found.skipped)
    assert not disagree, "\n".join(disagree)
    assert kinds == {"pipe", "fifo", "unix", "pty", "eventfd"}


@needs_kcmp
def test_the_split_lsfd_cannot_show_is_the_kernels(spawn: Spawn, tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("the family's new network namespace needs root")
    pids = family(spawn, tmp_path)
    checked = 0
    for pid in pids:
        for fd in fds_of(pid):
            try:
                found = kcmp_rs.endpoints(pid, fd, pids)
            except kcmp_rs.NotAChannelError:
                continue
            for end in found.ends:
                groups = canonical([(m.pid, m.fd) for m in d.members] for d in end.descriptions)
                refs = [r for g in groups for r in g]
                assert groups == pairwise_groups(refs), (pid, fd, end.side)
                checked += 1
    assert checked > 40
