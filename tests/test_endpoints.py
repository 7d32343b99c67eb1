"""``endpoints()``: the other ends of pipes, FIFOs, Unix sockets, ptys and eventfds, on
process families the tests build, each end's description split checked against the
brute-force truth (every pair asked of kcmp through the ctypes baseline)."""

from __future__ import annotations

import ctypes
import fcntl
import os
import pickle
import pty
import re
import socket
import struct
import threading
from pathlib import Path
from typing import Any

import kcmp_rs
import pytest
from _checks import needs_kcmp, needs_root
from _fallback_helpers import open_eventfd
from _helpers import Spawn, canonical, drop_to_nobody, pairwise_groups, run_in_child, spawned
from kcmp_rs import Endpoints, NotAChannelError

Ref = tuple[int, int]


def ends(found: Endpoints) -> dict[str, list[tuple[Ref, ...]]]:
    """Each end's descriptions, as groups of (pid, fd)."""
    return {
        e.side: canonical([(m.pid, m.fd) for m in d.members] for d in e.descriptions)
        for e in found.ends
    }


def truth(refs: list[Ref]) -> list[tuple[Ref, ...]]:
    return pairwise_groups(sorted(refs))


def send_fds(sock: socket.socket, fds: list[int]) -> None:
    socket.send_fds(sock, [b"x"], fds)


# ---- pipes and FIFOs ----


@needs_kcmp
def test_a_pipe_whose_writer_all_but_one_child_closed(me: int, spawn: Spawn) -> None:
    r, w = os.pipe()
    try:

        def reader() -> dict[str, int]:
            os.close(w)
            return {}

        readers = [spawn(reader) for _ in range(2)]
        writer = spawn(lambda: {"dup": os.dup(w)})
        pids = [me, *(c.pid for c in readers), writer.pid]
        found = kcmp_rs.endpoints(me, r, pids)
        pipe = f"pipe:[{os.fstat(r).st_ino}]"
        assert (found.kind, found.target, found.sides) == ("pipe", pipe, ("read",))
        read = [(p, r) for p in pids]
        write = [(me, w), (writer.pid, w), (writer.pid, writer.data["dup"])]
        assert ends(found) == {"read": truth(read), "write": truth(write)}
        assert len(ends(found)["read"]) == 1 and len(ends(found)["write"]) == 1
        assert [(m.pid, m.fd) for m in found.peers] == sorted(set(read + write) - {(me, r)})
        assert found.complete and found.partial is None
    finally:
        os.close(r)
        os.close(w)


@needs_kcmp
def test_a_pipe_end_reopened_through_proc_is_a_second_description(me: int) -> None:
    r, w = os.pipe()
    again = os.open(f"/proc/self/fd/{r}", os.O_RDONLY)
    try:
        found = kcmp_rs.endpoints(me, w, [me])
        assert found.sides == ("write",)
        assert ends(found) == {"read": [((me, r),), ((me, again),)], "write": [((me, w),)]}
        assert ends(found)["read"] == truth([(me, r), (me, again)])
    finally:
        for fd in (r, w, again):
            os.close(fd)


@needs_kcmp
def test_a_fifo_opened_read_write_is_on_both_sides(me: int, tmp_path: Path, spawn: Spawn) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    both = os.open(fifo, os.O_RDWR)
    try:
        reader = spawn(lambda: {"fd": os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)})
        writer = spawn(lambda: {"fd": os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)})
        pids = [me, reader.pid, writer.pid]
        found = kcmp_rs.endpoints(reader.pid, reader.data["fd"], pids)
        assert (found.kind, found.target, found.sides) == ("fifo", str(fifo), ("read",))
        # The children inherited `both` from this process: one description with it.
        rw = ((me, both), (reader.pid, both), (writer.pid, both))
        assert ends(found) == {
            "read": canonical([rw, ((reader.pid, reader.data["fd"]),)]),
            "write": canonical([rw, ((writer.pid, writer.data["fd"]),)]),
        }
        everything = [*rw, (reader.pid, reader.data["fd"]), (writer.pid, writer.data["fd"])]
        assert canonical(set(ends(found)["read"]) | set(ends(found)["write"])) == truth(everything)
    finally:
        os.close(both)


# ---- Unix sockets ----


@needs_kcmp
def test_a_socket_passed_to_a_third_process(me: int, spawn: Spawn) -> None:
    carrier, far = socket.socketpair()
    a, b = socket.socketpair()

    def receive() -> dict[str, int]:
        os.close(a.fileno())  # inherited: the child holds the pair only as passed to it
        _, fds, _, _ = socket.recv_fds(far, 1, 1)
        return {"fd": fds[0]}

    try:
        send_fds(carrier, [b.fileno()])  # in flight until the child takes it
        b.close()
        third = spawn(receive)
        pids = [me, third.pid]
        found = kcmp_rs.endpoints(me, a.fileno(), pids)
        assert (found.kind, found.sides) == ("unix", ("socket",))
        assert ends(found) == {
            "socket": [((me, a.fileno()),)],
            "peer": [((third.pid, third.data["fd"]),)],
        }
        assert [(m.pid, m.fd) for m in found.peers] == [(third.pid, third.data["fd"])]
        # From the other end, this process's socket is the peer.
        back = kcmp_rs.endpoints(third.pid, third.data["fd"], pids)
        assert (me, a.fileno()) in [(m.pid, m.fd) for m in back.peers]
    finally:
        for s in (a, b, carrier, far):
            s.close()


@needs_kcmp
def test_a_listening_socket_has_no_peer_and_its_connections_do(me: int) -> None:
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(f"\0kcmp-rs-test-{me}-{id(listener)}")
    listener.listen(4)
    clients = [socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) for _ in range(3)]
    try:
        for c in clients:
            c.connect(listener.getsockname())
        accepted = [listener.accept()[0] for _ in range(2)]  # the third stays pending
        found = kcmp_rs.endpoints(me, listener.fileno(), [me])
        assert ends(found) == {"socket": [((me, listener.fileno()),)]}
        assert found.peers == ()
        for conn, client in zip(accepted, clients):
            there = kcmp_rs.endpoints(me, conn.fileno(), [me])
            assert [(m.pid, m.fd) for m in there.peers] == [(me, client.fileno())]
        pending = kcmp_rs.endpoints(me, clients[2].fileno(), [me])
        assert pending.peers == ()  # its peer is held by no process until accepted
        for conn in accepted:
            conn.close()
    finally:
        listener.close()
        for c in clients:
            c.close()


def _socketpair_in_new_netns() -> dict[str, int]:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(0x40000000) != 0:  # CLONE_NEWNET
        raise OSError(ctypes.get_errno(), "unshare(CLONE_NEWNET)")
    a, b = socket.socketpair()
    return {"a": a.detach(), "b": b.detach()}


@needs_kcmp
def test_a_socket_in_another_network_namespace(me: int, spawn: Spawn) -> None:
    if os.geteuid() != 0:
        pytest.skip("a new network namespace needs root (CAP_SYS_ADMIN)")
    child = spawn(_socketpair_in_new_netns)
    assert os.readlink(f"/proc/{child.pid}/ns/net") != os.readlink("/proc/self/ns/net")
    found = kcmp_rs.endpoints(child.pid, child.data["a"], [me, child.pid])
    assert found.partial is None
    assert ends(found) == {
        "socket": [((child.pid, child.data["a"]),)],
        "peer": [((child.pid, child.data["b"]),)],
    }


# ---- ptys and eventfds ----


@needs_kcmp
def test_a_pty_master_held_by_two_processes(me: int, spawn: Spawn) -> None:
    master, slave = pty.openpty()
    name = os.ttyname(slave)
    os.close(slave)
    try:
        holder = spawn(lambda: {})  # inherits the master
        opener = spawn(lambda: {"slave": os.open(name, os.O_RDWR | os.O_NOCTTY)})
        pids = [me, holder.pid, opener.pid]
        found = kcmp_rs.endpoints(me, master, pids)
        assert (found.kind, found.sides) == ("pty", ("master",))
        assert ends(found)["master"] == truth([(p, master) for p in pids])
        assert ends(found)["slave"] == [((opener.pid, opener.data["slave"]),)]
        back = kcmp_rs.endpoints(opener.pid, opener.data["slave"], pids)
        assert (back.target, back.sides) == (name, ("slave",))
        assert [(m.pid, m.fd) for m in back.peers] == [(p, master) for p in sorted(pids)]
    finally:
        os.close(master)


@needs_kcmp
def test_an_eventfd_shared_by_fork_and_a_separate_one(me: int, spawn: Spawn) -> None:
    shared = open_eventfd()
    other = open_eventfd()
    try:
        child = spawn(lambda: {"dup": os.dup(shared)})
        found = kcmp_rs.endpoints(child.pid, shared, [me, child.pid])
        assert (found.kind, found.target) == ("eventfd", "anon_inode:[eventfd]")
        refs = [(me, shared), (child.pid, shared), (child.pid, child.data["dup"])]
        assert ends(found) == {"counter": truth(refs)}
        assert (me, other) not in [(m.pid, m.fd) for m in found.peers]
    finally:
        os.close(shared)
        os.close(other)


# ---- threads, deaths, errors ----


@needs_kcmp
def test_a_thread_id_reads_its_process(me: int) -> None:
    r, w = os.pipe()
    seen: list[int] = []
    ready, done = threading.Event(), threading.Event()

    def run() -> None:
        seen.append(threading.get_native_id())
        ready.set()
        done.wait()

    t = threading.Thread(target=run)
    t.start()
    try:
        ready.wait()
        found = kcmp_rs.endpoints(seen[0], r, [me])
        # One fd table is read once, under the smaller of the thread's id and the pid.
        assert sorted(found.fd_table_shared) == [tuple(sorted((me, seen[0])))]
        under = min(me, seen[0])
        assert ends(found) == {"read": [((under, r),)], "write": [((under, w),)]}
        assert found.sides == ("read",)
        assert [(m.pid, m.fd) for m in found.peers] == [(under, w)]
    finally:
        done.set()
        t.join()
        os.close(r)
        os.close(w)


@needs_kcmp
def test_the_asked_process_exiting_mid_call_raises(me: int) -> None:
    r, w = os.pipe()
    with spawned(expect_exit=None) as child:

        def kill(done: int, total: int) -> None:
            if child.status is None:
                child.kill()

        try:
            with pytest.raises(kcmp_rs.ProcessGoneError) as caught:
                kcmp_rs.endpoints(child.pid, r, [me, child.pid], progress=kill)
            assert caught.value.pid == child.pid
            assert caught.value.kind in ("exited", "absent")
        finally:
            os.close(r)
            os.close(w)


@needs_kcmp
def test_another_process_exiting_mid_call_is_skipped(me: int) -> None:
    r, w = os.pipe()
    try:
        with spawned(expect_exit=None) as child:

            def kill(done: int, total: int) -> None:
                if child.status is None:
                    child.kill()

            found = kcmp_rs.endpoints(me, r, [me, child.pid], progress=kill)
        assert [s.pid for s in found.skipped] == [child.pid]
        assert not found.complete
        assert ends(found) == {"read": [((me, r),)], "write": [((me, w),)]}
    finally:
        os.close(r)
        os.close(w)


@pytest.mark.parametrize(
    ("opener", "file_type", "words"),
    [
        (lambda p: os.open(p, os.O_RDONLY), "REG", "is a regular file"),
        (lambda p: os.open(os.path.dirname(p), os.O_RDONLY), "DIR", "is a directory"),
        (lambda p: socket.socket().detach(), "SOCK", "is a socket"),
    ],
    ids=["regular-file", "directory", "tcp-socket"],
)
def test_an_fd_that_is_no_end_of_a_channel(
    me: int, tmp_path: Path, opener: Any, file_type: str, words: str
) -> None:
    path = tmp_path / "plain"
    path.write_text("x")
    fd = opener(str(path))
    try:
        with pytest.raises(NotAChannelError) as caught:
            kcmp_rs.endpoints(me, fd, [me])
        err = caught.value
        assert isinstance(err, ValueError)
        assert (err.pid, err.fd, err.file_type) == (me, fd, file_type)
        assert str(err).startswith(f"fd {fd} of process {me} ")
        assert words in str(err)
        assert "not an end of a pipe, FIFO, Unix socket, pty or eventfd" in str(err)
        again = pickle.loads(pickle.dumps(err))
        assert (type(again), again.args, again.file_type) == (NotAChannelError, err.args, file_type)
    finally:
        os.close(fd)


def test_a_closed_fd_and_a_missing_process(me: int) -> None:
    r, w = os.pipe()
    os.close(r)
    os.close(w)
    with pytest.raises(kcmp_rs.FdNotOpenError) as closed:
        kcmp_rs.endpoints(me, r, [me])
    assert (closed.value.pid, closed.value.fd) == (me, r)
    assert str(closed.value).endswith(f"fd {r} is not open in process {me}")
    with pytest.raises(kcmp_rs.ProcessGoneError) as gone:
        kcmp_rs.endpoints(4_000_000, 3, [me])
    assert (gone.value.pid, gone.value.kind) == (4_000_000, "absent")


@pytest.mark.parametrize(
    ("args", "kwargs", "error", "message"),
    [
        ((True, 3), {}, TypeError, "pid must be an int, not bool"),
        ((0, 3), {}, ValueError, "pid must be a pid in 1..2147483647, got 0"),
        ((1, -1), {}, ValueError, "fd must be an fd in 0..2147483647, got -1"),
        ((1, 3, 5), {}, TypeError, "pids must be an iterable of ints, not int"),
        ((1, 3, [1]), {"allow_pidfd_getfd": 1}, TypeError, "allow_pidfd_getfd must be a bool"),
        ((1, 3, [1]), {"progress": 5}, TypeError, "progress must be callable or None"),
    ],
)
def test_bad_arguments(
    args: tuple[Any, ...], kwargs: dict[str, Any], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=re.escape(message)):
        kcmp_rs.endpoints(*args, **kwargs)


@needs_kcmp
def test_to_dict_names_each_side_and_members(me: int) -> None:
    r, w = os.pipe()
    try:
        doc = kcmp_rs.endpoints(me, r, [me]).to_dict()
        assert doc["kind"] == "pipe" and doc["sides"] == ["read"]
        assert [e["side"] for e in doc["ends"]] == ["read", "write"]
        member = doc["ends"][1]["descriptions"][0]["members"][0]
        assert (member["pid"], member["fd"]) == (me, w) and member["command"]
        assert doc["peers"] == [member]
        assert doc["partial"] is None and doc["schema_version"] == 2
    finally:
        os.close(r)
        os.close(w)


def _ask_as_nobody(pid: int, fd: int) -> str:
    drop_to_nobody()
    try:
        kcmp_rs.endpoints(pid, fd, [pid])
    except kcmp_rs.ProcessAccessError as err:
        return f"{type(err).__name__} {err.pid}: {err}"
    return "answered"


@needs_root
def test_a_process_that_may_not_be_read_is_permission_denied(me: int) -> None:
    r, w = os.pipe()
    try:
        said = run_in_child(_ask_as_nobody, me, r).unwrap()
        assert said.startswith(f"ProcessAccessError {me}: [Errno 1] Operation not permitted: ")
        assert f"process {me} may not be inspected by this process" in said
    finally:
        os.close(r)
        os.close(w)


def _ptys_of_a_new_devpts_instance(index: int, tmp: str) -> dict[str, int]:
    """In a mount namespace of its own, a devpts instance of its own, whose ptys are
    opened up to number ``index``: its pty ``index`` has the number of one of the host's."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(0x00020000) != 0:  # CLONE_NEWNS
        raise OSError(ctypes.get_errno(), "unshare(CLONE_NEWNS)")
    libc.mount(None, b"/", None, 0x40000 | 0x4000, None)  # MS_PRIVATE | MS_REC
    if libc.mount(b"devpts", tmp.encode(), b"devpts", 0, b"newinstance,ptmxmode=0666") != 0:
        raise OSError(ctypes.get_errno(), "mount devpts")
    masters = [os.open(f"{tmp}/ptmx", os.O_RDWR | os.O_NOCTTY) for _ in range(index + 1)]
    fcntl.ioctl(masters[index], 0x40045431, struct.pack("i", 0))  # TIOCSPTLCK: unlockpt
    slave = os.open(f"{tmp}/{index}", os.O_RDWR | os.O_NOCTTY)
    return {"master": masters[index], "slave": slave}


@needs_kcmp
@needs_root
def test_ptys_of_two_devpts_instances_are_never_mixed(
    me: int, spawn: Spawn, tmp_path: Path
) -> None:
    master, slave = pty.openpty()
    index = int(os.ttyname(slave).rsplit("/", 1)[1])
    try:
        other = spawn(lambda: _ptys_of_a_new_devpts_instance(index, str(tmp_path)))
        pids = [me, other.pid]
        # The host's slave: the other instance's slave of that number is another pty;
        # two masters of that index cannot be told apart from /proc: said, not guessed.
        found = kcmp_rs.endpoints(me, slave, pids)
        assert ends(found)["slave"] == canonical([[(me, slave), (other.pid, slave)]])  # inherited
        assert found.partial is not None and "share index" in found.partial
        # The other instance's slave, likewise.
        there = kcmp_rs.endpoints(other.pid, other.data["slave"], pids)
        assert ends(there)["slave"] == [((other.pid, other.data["slave"]),)]
        assert not there.complete
        # A scan pairs neither: the note says why.
        scanned = kcmp_rs.scan(pids, ipc=True)
        assert all(c.kind != "pty" for c in scanned.channels or ())
        assert any("devpts instances number a pty" in n for n in scanned.channel_notes)
    finally:
        os.close(master)
        os.close(slave)


@needs_kcmp
def test_the_asked_fd_replaced_mid_call_is_blocking_io_error(me: int, spawn: Spawn) -> None:
    """The progress callback, between the listings and the classification, puts another
    pipe under the asked number: the answer would be about another file, so none."""
    r, w = os.pipe()
    other_r, other_w = os.pipe()
    try:
        child = spawn()

        def swap(done: int, total: int) -> None:
            os.dup2(other_r, r)

        with pytest.raises(BlockingIOError) as caught:
            kcmp_rs.endpoints(me, r, [me, child.pid], progress=swap)
        assert isinstance(caught.value, kcmp_rs.KcmpError)
        assert (caught.value.pid, caught.value.fd) == (me, r)
        assert str(caught.value).endswith(
            f"fd {r} of process {me} was closed or replaced while its channel was read; try again"
        )
    finally:
        for fd in (r, w, other_r, other_w):
            os.close(fd)
