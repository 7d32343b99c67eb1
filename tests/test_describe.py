"""The native /proc room's description of fds (``_native.describe_refs``, behind
every report's target, mode and type): the same as reading /proc with os calls here,
for every kind of fd, in order across its threads, with placeholders for what is
gone, and its argument errors.
"""

from __future__ import annotations

import os
import select
import socket
import stat
import tempfile
from collections.abc import Iterator

import pytest
from _checks import raised
from _family import build_family
from _helpers import spawned
from kcmp_rs._native import describe_refs

ME = os.getpid()
GONE = (None, "?", "?")
TYPES = {
    stat.S_IFREG: "REG",
    stat.S_IFDIR: "DIR",
    stat.S_IFCHR: "CHR",
    stat.S_IFBLK: "BLK",
    stat.S_IFIFO: "FIFO",
    stat.S_IFSOCK: "SOCK",
}


def from_python(pid: int, fd: int) -> tuple[bytes | None, str, str]:
    """What ``describe_refs`` must answer for one fd, read with os calls: the link's
    permission bits are the open mode; the target names sockets, pipes and anon
    inodes, the file's st_mode every other type."""
    path = b"/proc/%d/fd/%d" % (pid, fd)
    try:
        target = os.readlink(path)
    except OSError:
        return GONE
    bits = os.lstat(path).st_mode
    mode = {(1, 1): "rw", (1, 0): "r", (0, 1): "w", (0, 0): "path"}[
        (int(bool(bits & stat.S_IRUSR)), int(bool(bits & stat.S_IWUSR)))
    ]
    if target.startswith(b"socket:["):
        kind = "SOCK"
    elif target.startswith(b"pipe:["):
        kind = "FIFO"
    elif target.startswith(b"anon_inode:"):
        kind = os.fsdecode(target[len(b"anon_inode:") :]).strip("[]") or "anon"
    else:
        kind = TYPES.get(stat.S_IFMT(os.stat(path).st_mode), "?")
    return target, mode, kind


@pytest.fixture
def kinds() -> Iterator[list[int]]:
    """One fd of each kind: a file read-write, /dev/null read-only and write-only, both
    ends of a pipe, a socket, an epoll set (anon inode: os.eventfd needs 3.10), an
    O_PATH fd, a directory."""
    opened: list[int] = []
    socks = socket.socketpair()
    epoll = select.epoll()
    try:
        with tempfile.NamedTemporaryFile() as f:
            opened += [
                os.open(f.name, os.O_RDWR),
                os.open("/dev/null", os.O_RDONLY),
                os.open("/dev/null", os.O_WRONLY),
                *os.pipe(),
                os.dup(epoll.fileno()),
                os.open(f.name, os.O_PATH),
                os.open("/", os.O_RDONLY | os.O_DIRECTORY),
            ]
            yield [*opened, socks[0].fileno()]
    finally:
        for fd in opened:
            os.close(fd)
        for s in socks:
            s.close()
        epoll.close()


def test_each_kind_of_fd_reads_as_from_python(kinds: list[int]) -> None:
    refs = [(ME, fd) for fd in kinds]
    found = describe_refs(refs)
    assert found == [from_python(pid, fd) for pid, fd in refs]
    modes = [mode for _, mode, _ in found]
    assert modes == ["rw", "r", "w", "r", "w", "rw", "path", "r", "rw"]
    types = [kind for _, _, kind in found]
    assert types == ["REG", "CHR", "CHR", "FIFO", "FIFO", "eventpoll", "REG", "DIR", "SOCK"]


def test_gone_fds_and_processes_read_as_none() -> None:
    r, w = os.pipe()
    os.close(w)
    with spawned() as child:
        pid = child.pid
        assert describe_refs([(pid, 0)]) == [from_python(pid, 0)]
    # Reaped by now: nothing of it can be read.
    assert describe_refs([(pid, 0), (ME, w), (ME, r)]) == [GONE, GONE, from_python(ME, r)]
    os.close(r)


def test_many_refs_across_threads_keep_their_order() -> None:
    # Thousands of refs, several chunks per thread: each answer stays with its ref.
    with build_family(4, 600) as family:
        refs = [ref for pid in family.pids for ref in family.refs(pid)]
        refs.reverse()
        assert len(refs) >= 2400
        assert describe_refs(refs) == [from_python(pid, fd) for pid, fd in refs]
        assert describe_refs([]) == []


@pytest.mark.parametrize(
    ("refs", "cls", "message"),
    [
        (5, TypeError, "refs must be an iterable of (pid, fd) pairs, not int"),
        (None, TypeError, "refs must be an iterable of (pid, fd) pairs, not NoneType"),
        ([(ME,)], TypeError, "each item of refs must be a (pid, fd) tuple, not a tuple of 1 item"),
        ([("1", 0)], TypeError, "pid in refs must be an int, not str"),
        ([(0, 0)], ValueError, "pid in refs must be a pid in 1..2147483647, got 0"),
    ],
)
def test_argument_errors(refs: object, cls: type[Exception], message: str) -> None:
    e = raised(describe_refs, refs)
    assert type(e) is cls
    assert str(e) == message


def test_the_type_is_the_file_s_and_an_anon_inode_names_itself() -> None:
    # A directory's link is a symlink: the type is the file's, never the link's.
    with tempfile.TemporaryDirectory() as d:
        fd = os.open(d, os.O_RDONLY | os.O_DIRECTORY)
        try:
            ((_, _, kind),) = describe_refs([(ME, fd)])
        finally:
            os.close(fd)
    assert kind == "DIR"
    if hasattr(os, "eventfd"):  # Python 3.10+
        efd = os.eventfd(0)
        try:
            assert describe_refs([(ME, efd)]) == [(b"anon_inode:[eventfd]", "rw", "eventfd")]
        finally:
            os.close(efd)
