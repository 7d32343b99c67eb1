"""The scan's native reading of /proc (``_native.describe_refs``): the same target, link
mode and file type as reading /proc from Python (``_proc``), for every kind of fd, in
order across its threads, with placeholders for what is gone, and its argument errors.
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
from kcmp_rs import _proc
from kcmp_rs._native import describe_refs

ME = os.getpid()
TYPED = (b"socket:[", b"pipe:[", b"anon_inode:")


def from_python(pid: int, fd: int) -> tuple[bytes | None, int | None, int | None]:
    """What ``describe_refs`` must answer for one fd, read with os calls."""
    path = b"/proc/%d/fd/%d" % (pid, fd)
    try:
        target = os.readlink(path)
    except OSError:
        return None, None, None
    link = os.lstat(path).st_mode
    file = None if target.startswith(TYPED) else os.stat(path).st_mode
    return target, link, file


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
    for (pid, fd), (target, link, file) in zip(refs, found):
        assert target is not None and link is not None
        name = os.fsdecode(target)
        assert name == _proc.read_target(pid, fd)
        assert _proc.mode_of(link) == _proc.read_mode(pid, fd)
        assert _proc.type_of(name, file) == _proc.file_type(pid, fd, name)
    modes = [_proc.mode_of(link) for _, link, _ in found]
    assert modes[:3] == ["rw", "r", "w"] and modes[6] == "path"
    types = [_proc.type_of(os.fsdecode(t or b""), f) for t, _, f in found]
    assert types == ["REG", "CHR", "CHR", "FIFO", "FIFO", "eventpoll", "REG", "DIR", "SOCK"]


def test_gone_fds_and_processes_read_as_none() -> None:
    r, w = os.pipe()
    os.close(w)
    with spawned() as child:
        pid = child.pid
        assert describe_refs([(pid, 0)]) == [from_python(pid, 0)]
    # Reaped by now: nothing of it can be read.
    assert describe_refs([(pid, 0), (ME, w), (ME, r)]) == [
        (None, None, None),
        (None, None, None),
        from_python(ME, r),
    ]
    os.close(r)
    assert _proc.mode_of(None) == "?"
    assert _proc.type_of("/x", None) == "?"


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


def test_file_type_bits_are_the_file_s() -> None:
    # The third field is the file's st_mode, never the link's.
    with tempfile.TemporaryDirectory() as d:
        fd = os.open(d, os.O_RDONLY | os.O_DIRECTORY)
        try:
            ((_, link, file),) = describe_refs([(ME, fd)])
        finally:
            os.close(fd)
    assert link is not None and stat.S_ISLNK(link)
    assert file is not None and stat.S_ISDIR(file)
