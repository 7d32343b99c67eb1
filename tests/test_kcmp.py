"""The single-call API of kcmp_rs against the kernel and the ctypes baseline.

(a) a port of the kernel's tools/testing/selftests/kcmp/kcmp_test.c; (b) every errno
triggered for real, with class, message and attributes; (c) exceptions pickle;
(d) bad arguments for every public function; (e) sharing() and same_*(); (f) native
and baseline agree on random fd sets, order included; (g) the baseline's three
classifications agree. Every process touched here is one this module started.
"""

from __future__ import annotations

import ctypes
import errno
import os
import pickle
import platform
import random
import re
import select
import signal
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import kcmp_rs
import pytest
from _helpers import ChildResult, fd_snapshot, run_in_child, spawned
from _seccomp import KcmpAction, SeccompUnsupported, install_filter, syscall_numbers
from conftest import Spawn
from hypothesis import given, settings
from hypothesis import strategies as st
from kcmp_rs import KcmpType, KcmpUnavailableError, Order, Sharing, baseline

ME = os.getpid()
INT_MAX = 2**31 - 1
_libc = ctypes.CDLL(None, use_errno=True)


def _kcmp_missing() -> str | None:
    """Why kcmp cannot be exercised on this machine, or None when it can."""
    try:
        baseline.kcmp(ME, ME, KcmpType.VM)
    except OSError as e:
        return f"kcmp(2) does not work in this process: {e}"
    return None


KCMP_MISSING = _kcmp_missing()
needs_kcmp = pytest.mark.skipif(KCMP_MISSING is not None, reason=KCMP_MISSING or "")


def _seccomp_missing() -> str | None:
    try:
        syscall_numbers()
    except SeccompUnsupported as e:
        return str(e)
    return None


SECCOMP_MISSING = _seccomp_missing()
needs_seccomp = pytest.mark.skipif(SECCOMP_MISSING is not None, reason=SECCOMP_MISSING or "")
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="dropping to uid 65534 needs root")


# ---- checking exceptions ----


def describe(e: BaseException) -> dict[str, Any]:
    """What a test checks of an exception, as plain data."""
    return {
        "type": type(e),
        "args": e.args,
        "str": str(e),
        "errno": getattr(e, "errno", None),
        "strerror": getattr(e, "strerror", None),
        "pid": getattr(e, "pid", "<missing>"),
        "fd": getattr(e, "fd", "<missing>"),
        "reason": getattr(e, "reason", "<missing>"),
        "undecided": getattr(e, "undecided", "<missing>"),
    }


def assert_pickles(e: BaseException) -> None:
    """Every protocol gives back the same class, args, message and attributes."""
    for protocol in range(pickle.HIGHEST_PROTOCOL + 1):
        copy = pickle.loads(pickle.dumps(e, protocol))
        assert describe(copy) == describe(e), protocol


def check_os_error(
    e: object, cls: type[OSError], err: int, detail: str, pid: int | None, fd: int | None
) -> None:
    """``e`` is exactly ``cls(err, "<strerror>: <detail>")`` with ``pid`` and ``fd``."""
    assert type(e) is cls, repr(e)
    assert isinstance(e, OSError)
    assert e.errno == err
    assert e.strerror == f"{os.strerror(err)}: {detail}"
    assert e.args == (err, e.strerror)
    assert str(e) == f"[Errno {err}] {os.strerror(err)}: {detail}"
    assert getattr(e, "pid", "<missing>") == pid
    assert getattr(e, "fd", "<missing>") == fd
    assert e.filename is None
    assert_pickles(e)


def raised(fn: Callable[..., object], *args: Any, **kwargs: Any) -> BaseException:
    """The exception ``fn(*args, **kwargs)`` raises (failing if it returns)."""
    try:
        value = fn(*args, **kwargs)
    except Exception as e:
        return e
    raise AssertionError(
        f"{getattr(fn, '__name__', fn)}{args} returned {value!r}, expected an error"
    )


@dataclass(frozen=True)
class Raised:
    """An exception caught in a child, with what the child saw of it before pickling."""

    exc: BaseException
    seen: dict[str, Any]


def outcome(fn: Callable[..., object], *args: Any, **kwargs: Any) -> object:
    """``fn``'s value, or a ``Raised``: for children reporting several calls at once."""
    try:
        return fn(*args, **kwargs)
    except Exception as e:
        return Raised(e, describe(e))


def unraise(value: object) -> BaseException:
    """The exception of a ``Raised`` from a child, checked to have survived pickling."""
    assert isinstance(value, Raised), f"expected an exception, got {value!r}"
    assert describe(value.exc) == value.seen
    return value.exc


# ---- fds of this process ----


@pytest.fixture
def pipe() -> Iterator[tuple[int, int]]:
    r, w = os.pipe()
    yield r, w
    os.close(r)
    os.close(w)


def closed_fd() -> int:
    """An fd number that is not open (opened and closed just now)."""
    fd = os.open("/dev/null", os.O_RDONLY)
    os.close(fd)
    return fd


# ---- (a) the kernel selftest ----


def _selftest_child(
    pid1: int, path: str, fd1: int, pipe_w: int, epfd: int, tfd: int
) -> dict[str, Any]:
    """The child half of kcmp_test.c: compares itself (pid2) with its parent (pid1)."""
    pid2 = os.getpid()
    fd2 = os.open(path, os.O_RDWR)
    task_types = [KcmpType.FILES, KcmpType.VM, KcmpType.FS, KcmpType.SIGHAND]
    slot = (ctypes.c_uint32 * 3)(epfd, tfd, 0)  # struct kcmp_epoll_slot
    return {
        "pid2": pid2,
        "reopen": kcmp_rs.kcmp(pid1, pid2, KcmpType.FILE, fd1, fd2),
        "reopen_back": kcmp_rs.kcmp(pid2, pid1, KcmpType.FILE, fd2, fd1),
        "reopen_baseline": baseline.kcmp(pid1, pid2, KcmpType.FILE, fd1, fd2),
        "reopen_same_file": kcmp_rs.same_file(pid1, fd1, pid2, fd2),
        "inherited": kcmp_rs.kcmp(pid1, pid2, KcmpType.FILE, fd1, fd1),
        "inherited_same_file": kcmp_rs.same_file(pid1, fd1, pid2, fd1),
        "tasks": {t.name: kcmp_rs.kcmp(pid1, pid2, t) for t in task_types},
        "tasks_baseline": {t.name: baseline.kcmp(pid1, pid2, t) for t in task_types},
        "self1": {t.name: kcmp_rs.kcmp(pid1, pid1, t) for t in task_types},
        "self2": {t.name: kcmp_rs.kcmp(pid2, pid2, t) for t in task_types},
        "io_sysvsem": [
            kcmp_rs.kcmp(pid1, pid2, KcmpType.IO),
            kcmp_rs.kcmp(pid1, pid2, KcmpType.SYSVSEM),
        ],
        "io_sysvsem_baseline": [
            baseline.kcmp(pid1, pid2, KcmpType.IO),
            baseline.kcmp(pid1, pid2, KcmpType.SYSVSEM),
        ],
        "invalid": outcome(kcmp_rs.kcmp, pid1, pid2, 9),
        "invalid_baseline": outcome(baseline.kcmp, pid1, pid2, 9),
        "epoll_target": kcmp_rs.same_epoll_target(pid1, pipe_w, pid1, epfd, tfd),
        "epoll_target_child": kcmp_rs.same_epoll_target(pid2, pipe_w, pid1, epfd, tfd),
        "epoll_target_baseline": baseline.kcmp(
            pid1, pid1, KcmpType.EPOLL_TFD, pipe_w, ctypes.addressof(slot)
        ),
    }


@needs_kcmp
def test_kernel_selftest_port(tmp_path: Path, fd_leak_check: None) -> None:
    path = str(tmp_path / "kcmp-test-file")
    fd1 = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
    r, w = os.pipe()
    ep = select.epoll()
    try:
        ep.register(r, select.EPOLLIN | select.EPOLLOUT)
        fddup = os.dup(w)
        ep.register(fddup, select.EPOLLIN | select.EPOLLOUT)
        os.close(fddup)  # registered under a number that is closed now
        result: ChildResult[dict[str, Any]] = run_in_child(
            _selftest_child, ME, path, fd1, w, ep.fileno(), fddup
        )
        got = result.unwrap()
        assert result.exitcode == 0 and os.WIFEXITED(result.status)
        assert got["pid2"] == result.pid != ME
    finally:
        ep.close()
        for fd in (fd1, r, w):
            os.close(fd)

    assert got["reopen"] in (Order.LESS, Order.GREATER)
    assert {got["reopen"], got["reopen_back"]} == {Order.LESS, Order.GREATER}
    assert got["reopen_baseline"] is got["reopen"]
    assert got["reopen_same_file"] is False
    assert got["inherited"] is Order.EQUAL
    assert got["inherited_same_file"] is True
    for name, order in got["tasks"].items():
        assert order in (Order.LESS, Order.GREATER), name
        assert got["tasks_baseline"][name] is order, name
    assert all(o is Order.EQUAL for o in got["self1"].values())
    assert all(o is Order.EQUAL for o in got["self2"].values())
    # EQUAL when neither has one; but a process that ever started a thread has a SysV
    # undo list its forked child lacks, so only agreement with the raw call is certain.
    assert got["io_sysvsem"] == got["io_sysvsem_baseline"]
    invalid = unraise(got["invalid"])
    assert type(invalid) is ValueError
    assert str(invalid) == "type must be a KcmpType (0..7), got 9"
    check_raw = unraise(got["invalid_baseline"])
    assert type(check_raw) is OSError
    assert isinstance(check_raw, OSError) and check_raw.errno == errno.EINVAL
    assert got["epoll_target"] is True
    assert got["epoll_target_child"] is True
    assert got["epoll_target_baseline"] is Order.EQUAL


# ---- (b) every errno, for real ----


def gone_pid() -> int:
    """The pid of a child that has exited and been reaped."""
    result = run_in_child(os.getpid)
    assert result.unwrap() == result.pid
    return result.pid


@needs_kcmp
def test_esrch_names_the_missing_process(pipe: tuple[int, int]) -> None:
    gone = gone_pid()
    r, _ = pipe
    calls: list[tuple[Callable[..., object], tuple[int, ...]]] = [
        (kcmp_rs.kcmp, (gone, ME, KcmpType.VM)),
        (kcmp_rs.kcmp, (ME, gone, KcmpType.VM)),
        (kcmp_rs.kcmp, (ME, gone, KcmpType.FILE, r, r)),
        (kcmp_rs.same_file, (gone, r, ME, r)),
        (kcmp_rs.same_file, (ME, r, gone, r)),
        (kcmp_rs.same_vm, (ME, gone)),
        (kcmp_rs.same_sysvsem, (gone, ME)),
        (kcmp_rs.sharing, (ME, gone)),
        (kcmp_rs.same_epoll_target, (gone, r, ME, r, r)),
        (kcmp_rs.same_epoll_target, (ME, r, gone, r, r)),
    ]
    for fn, args in calls:
        e = raised(fn, *args)
        check_os_error(
            e, ProcessLookupError, errno.ESRCH, f"process {gone} does not exist", gone, None
        )
    raw = raised(baseline.kcmp, ME, gone, KcmpType.VM)
    assert type(raw) is ProcessLookupError and raw.args == (errno.ESRCH, os.strerror(errno.ESRCH))


def _open_pipe() -> dict[str, int]:
    r, w = os.pipe()
    return {"r": r, "w": w, "bad": closed_fd()}


@needs_kcmp
def test_ebadf_names_the_side_that_is_not_open(spawn: Spawn, pipe: tuple[int, int]) -> None:
    r, _ = pipe
    child = spawn(_open_pipe)
    cr, cbad = child.data["r"], child.data["bad"]
    ep = select.epoll()
    ep.register(r)
    epfd = ep.fileno()
    bad = closed_fd()  # after every open of this test, so nothing reuses it
    cases: list[tuple[Callable[..., object], tuple[int, ...], int, int]] = [
        (kcmp_rs.same_file, (ME, bad, ME, r), ME, bad),
        (kcmp_rs.same_file, (ME, r, ME, bad), ME, bad),
        (kcmp_rs.same_file, (ME, bad, ME, bad + 1000), ME, bad),  # both: the first
        (kcmp_rs.same_file, (ME, r, child.pid, cbad), child.pid, cbad),
        (kcmp_rs.same_file, (child.pid, cbad, ME, r), child.pid, cbad),
        (kcmp_rs.same_file, (child.pid, cr, child.pid, 1_000_000), child.pid, 1_000_000),
        (kcmp_rs.kcmp, (ME, ME, KcmpType.FILE, r, bad), ME, bad),
        (kcmp_rs.kcmp, (ME, child.pid, KcmpType.FILE, bad, cr), ME, bad),
        (kcmp_rs.same_epoll_target, (ME, bad, ME, epfd, r), ME, bad),
        (kcmp_rs.same_epoll_target, (ME, r, ME, bad, r), ME, bad),
        (kcmp_rs.same_epoll_target, (ME, r, child.pid, cbad, r), child.pid, cbad),
    ]
    try:
        for fn, args, pid, fd in cases:
            e = raised(fn, *args)
            check_os_error(
                e, OSError, errno.EBADF, f"fd {fd} is not open in process {pid}", pid, fd
            )
    finally:
        ep.close()
    assert kcmp_rs.same_file(ME, r, child.pid, r) is True  # inherited: the same pipe
    assert kcmp_rs.same_file(ME, r, child.pid, cr) is False  # the child's own pipe


def _epoll_setup() -> dict[str, int]:
    r, w = os.pipe()
    ep = select.epoll()
    ep.register(r)
    epfd = os.dup(ep.fileno())  # outlives the Python object
    ep.close()
    return {"r": r, "w": w, "ep": epfd}


@needs_kcmp
def test_epoll_target_errors(spawn: Spawn, pipe: tuple[int, int]) -> None:
    child = spawn(_epoll_setup)
    c = child.data
    pid = child.pid
    r, _ = pipe
    assert kcmp_rs.same_epoll_target(pid, c["r"], pid, c["ep"], c["r"]) is True
    assert kcmp_rs.same_epoll_target(pid, c["w"], pid, c["ep"], c["r"]) is False
    assert kcmp_rs.same_epoll_target(ME, r, pid, c["ep"], c["r"]) is False

    e = raised(kcmp_rs.same_epoll_target, pid, c["r"], pid, c["ep"], c["w"])
    detail = f"epoll fd {c['ep']} of process {pid} has no registration 0 of fd {c['w']}"
    check_os_error(e, FileNotFoundError, errno.ENOENT, detail, pid, c["ep"])
    e = raised(kcmp_rs.same_epoll_target, ME, r, pid, c["ep"], c["r"], 1)
    detail = f"epoll fd {c['ep']} of process {pid} has no registration 1 of fd {c['r']}"
    check_os_error(e, FileNotFoundError, errno.ENOENT, detail, pid, c["ep"])
    e = raised(kcmp_rs.same_epoll_target, ME, r, pid, c["w"], c["r"])
    detail = f"fd {c['w']} of process {pid} is not an epoll fd"
    check_os_error(e, OSError, errno.EINVAL, detail, pid, c["w"])


def _drop_and_compare(root_pid: int, fd: int) -> dict[str, Any]:
    """Runs as uid/gid 65534 in a child: every comparison with ``root_pid`` is denied."""
    os.setgroups([])
    os.setgid(65534)
    os.setuid(65534)
    me = os.getpid()
    return {
        "me": me,
        "uid": (os.getuid(), os.geteuid()),
        "self": kcmp_rs.same_vm(me, me),
        "me_root": outcome(kcmp_rs.kcmp, me, root_pid, KcmpType.VM),
        "root_me": outcome(kcmp_rs.kcmp, root_pid, me, KcmpType.VM),
        "root_root": outcome(kcmp_rs.same_fs, root_pid, root_pid),
        "file": outcome(kcmp_rs.same_file, me, fd, root_pid, fd),
        "file_root_first": outcome(kcmp_rs.same_file, root_pid, fd, me, fd),
        "file_getfd": outcome(kcmp_rs.same_file, me, fd, root_pid, fd, allow_pidfd_getfd=True),
        "sharing": outcome(kcmp_rs.sharing, me, root_pid),
        "epoll": outcome(kcmp_rs.same_epoll_target, me, fd, root_pid, fd, fd),
        "baseline": outcome(baseline.kcmp, me, root_pid, KcmpType.VM),
    }


@needs_kcmp
@needs_root
def test_eperm_names_the_process_that_may_not_be_inspected(
    spawn: Spawn, pipe: tuple[int, int]
) -> None:
    root = spawn()  # root-owned, started by this test
    r, _ = pipe
    result: ChildResult[dict[str, Any]] = run_in_child(_drop_and_compare, root.pid, r)
    got = result.unwrap()
    assert got["uid"] == (65534, 65534)
    assert got["self"] is True
    assert got["me"] == result.pid
    detail = (
        f"process {root.pid} may not be inspected by this process "
        "(kcmp needs ptrace read access: the same uid, or CAP_SYS_PTRACE)"
    )
    for key in (
        "me_root",
        "root_me",
        "root_root",
        "file",
        "file_root_first",
        "file_getfd",
        "sharing",
        "epoll",
    ):
        e = unraise(got[key])
        assert getattr(e, "pid", None) != got["me"], f"{key}: the caller was blamed"
        check_os_error(e, PermissionError, errno.EPERM, detail, root.pid, None)
    raw = unraise(got["baseline"])
    assert type(raw) is PermissionError and raw.args == (errno.EPERM, os.strerror(errno.EPERM))


# ---- (b) KcmpUnavailableError under a seccomp filter ----


def _sandboxed(
    action: KcmpAction, dupfd_query_errno: int | None, fd: int, other: int
) -> dict[str, Any]:
    """Runs in a child under the filter: what each call says when kcmp is refused."""
    install_filter(action, dupfd_query_errno)
    me = os.getpid()
    before = fd_snapshot()
    got = {
        "me": me,
        "kcmp": outcome(kcmp_rs.kcmp, me, me, KcmpType.VM),
        "kcmp_file": outcome(kcmp_rs.kcmp, me, me, KcmpType.FILE, fd, fd),
        "same_vm": outcome(kcmp_rs.same_vm, me, me),
        "sharing": outcome(kcmp_rs.sharing, me, me),
        "epoll": outcome(kcmp_rs.same_epoll_target, me, fd, me, fd, fd),
        "remote": outcome(kcmp_rs.same_file, me, fd, other, fd),
        "baseline": outcome(baseline.kcmp, me, me, KcmpType.VM),
    }
    got["leaked"] = sorted(fd_snapshot() - before)
    return got


def _check_unavailable(e: BaseException, err: int, must_mention: tuple[str, ...]) -> None:
    assert type(e) is KcmpUnavailableError, repr(e)
    assert isinstance(e, KcmpUnavailableError)
    assert e.errno == err
    assert e.strerror == f"{os.strerror(err)}: {e.reason}"
    assert str(e) == f"[Errno {err}] {e.strerror}"
    for word in must_mention:
        assert word in e.reason, (word, e.reason)
    assert e.pid is None and e.fd is None
    assert e.undecided == ()
    assert_pickles(e)


@needs_kcmp
@needs_seccomp
@pytest.mark.parametrize(
    ("err", "words"),
    [
        (errno.EPERM, ("seccomp", "SYS_PTRACE")),
        (errno.ENOSYS, ("CONFIG_KCMP",)),
    ],
    ids=["EPERM", "ENOSYS"],
)
def test_kcmp_unavailable_under_seccomp(
    spawn: Spawn, pipe: tuple[int, int], err: int, words: tuple[str, ...]
) -> None:
    other = spawn()
    r, _ = pipe
    result: ChildResult[dict[str, Any]] = run_in_child(
        _sandboxed, ("errno", err), None, r, other.pid
    )
    got = result.unwrap()
    for key in ("kcmp", "kcmp_file", "same_vm", "sharing", "epoll"):
        _check_unavailable(unraise(got[key]), err, words)
    # Another process's fd cannot be compared without kcmp unless pidfd_getfd is allowed.
    remote = unraise(got["remote"])
    assert type(remote) is KcmpUnavailableError
    assert isinstance(remote, KcmpUnavailableError)
    assert remote.errno == err
    # Both fds are named (the sandboxed child's own and the other process's).
    assert len(remote.undecided) == 2 and (other.pid, r) in remote.undecided
    assert f"fd {r} of process {other.pid}" in str(remote)
    assert_pickles(remote)
    raw = unraise(got["baseline"])
    assert isinstance(raw, OSError) and raw.errno == err
    assert got["leaked"] == []


def _fallbacks(
    dupfd_query_errno: int | None, path: str, other: int, pr: int, pw: int
) -> dict[str, Any]:
    """Under an EPERM filter: what same_file can still decide without kcmp.

    ``pr``/``pw``: a pipe this child and ``other`` both inherited.
    """
    install_filter(("errno", errno.EPERM), dupfd_query_errno)
    me = os.getpid()
    r, w = os.pipe()
    r2 = os.dup(r)
    f = os.open(path, os.O_RDONLY)
    f2 = os.dup(f)
    g = os.open(path, os.O_RDONLY)
    before = fd_snapshot()
    got = {
        "me": me,
        "fds": {"f": f, "f2": f2, "g": g},
        "pipe_dup": outcome(kcmp_rs.same_file, me, r, me, r2),
        "pipe_ends": outcome(kcmp_rs.same_file, me, r, me, w),
        "file_dup": outcome(kcmp_rs.same_file, me, f, me, f2),
        "file_reopen": outcome(kcmp_rs.same_file, me, f, me, g),
        "file_pipe": outcome(kcmp_rs.same_file, me, f, me, r),
        "remote_same": outcome(kcmp_rs.same_file, me, pr, other, pr, allow_pidfd_getfd=True),
        "remote_other_end": outcome(kcmp_rs.same_file, other, pw, me, pr, allow_pidfd_getfd=True),
        "remote_both": outcome(kcmp_rs.same_file, other, pr, other, pr, allow_pidfd_getfd=True),
        "remote_refused": outcome(kcmp_rs.same_file, me, pr, other, pr),
    }
    got["leaked"] = sorted(fd_snapshot() - before)
    return got


@needs_kcmp
@needs_seccomp
@pytest.mark.parametrize(
    "dupfd_query_errno", [None, errno.EINVAL], ids=["F_DUPFD_QUERY", "epoll-trick"]
)
def test_same_file_falls_back_without_kcmp(
    spawn: Spawn, tmp_path: Path, pipe: tuple[int, int], dupfd_query_errno: int | None
) -> None:
    path = tmp_path / "file"
    path.write_bytes(b"x")
    pr, pw = pipe
    other = spawn()  # inherits the pipe
    result: ChildResult[dict[str, Any]] = run_in_child(
        _fallbacks, dupfd_query_errno, str(path), other.pid, pr, pw
    )
    got = result.unwrap()
    me, fds = got["me"], got["fds"]
    # fstat tells different inodes apart; F_DUPFD_QUERY or the epoll trick the rest.
    assert got["pipe_dup"] is True
    assert got["pipe_ends"] is False  # one inode, two descriptions
    assert got["file_pipe"] is False
    # Another process's fds: copied with pidfd_getfd when allowed, refused otherwise.
    assert got["remote_same"] is True
    assert got["remote_other_end"] is False
    assert got["remote_both"] is True
    refused = unraise(got["remote_refused"])
    assert isinstance(refused, KcmpUnavailableError)
    assert refused.errno == errno.EPERM and refused.undecided == tuple(
        sorted([(other.pid, pr), (me, pr)])
    )
    if dupfd_query_errno is None and _dupfd_query_works():
        assert got["file_dup"] is True
        assert got["file_reopen"] is False
    else:
        # Regular files refuse epoll: nothing exact is left for a same-inode pair.
        for key, second in (("file_dup", "f2"), ("file_reopen", "g")):
            e = unraise(got[key])
            assert type(e) is KcmpUnavailableError and isinstance(e, KcmpUnavailableError)
            f, f2 = fds["f"], fds[second]
            assert e.errno == errno.EPERM
            assert e.undecided == ((me, f), (me, f2))
            assert e.pid is None and e.fd is None
            assert e.strerror == (
                f"{os.strerror(errno.EPERM)}: no exact method could decide "
                f"fd {f} of process {me}, fd {f2} of process {me}: {e.reason}"
            )
            assert "seccomp" in e.reason
            assert_pickles(e)
    assert got["leaked"] == []


def _dupfd_query_works() -> bool:
    """Whether this kernel has fcntl(F_DUPFD_QUERY) (Linux 6.10+)."""
    import fcntl

    fd = os.open("/dev/null", os.O_RDONLY)
    try:
        return fcntl.fcntl(fd, 1027, fd) == 1
    except OSError:
        return False
    finally:
        os.close(fd)


def _filter_after_first_use(fd: int) -> dict[str, Any]:
    me = os.getpid()
    before = kcmp_rs.kcmp(me, me, KcmpType.FILE, fd, fd)  # probes: usable
    install_filter(("errno", errno.EPERM))
    return {
        "before": before,
        "after": outcome(kcmp_rs.same_vm, me, me),
        "again": outcome(kcmp_rs.same_vm, me, me),
    }


@needs_kcmp
@needs_seccomp
def test_filter_installed_after_first_use(pipe: tuple[int, int]) -> None:
    got: dict[str, Any] = run_in_child(_filter_after_first_use, pipe[0]).unwrap()
    assert got["before"] is Order.EQUAL
    for key in ("after", "again"):
        _check_unavailable(unraise(got[key]), errno.EPERM, ("seccomp",))


def _killed_on_kcmp() -> None:
    import resource

    # No core dump from the SIGSYS: not to a file, nor to a core_pattern pipe.
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    _libc.prctl(4, 0, 0, 0, 0)  # PR_SET_DUMPABLE, 0
    install_filter(("kill",))
    me = os.getpid()
    baseline.kcmp(me, me, KcmpType.VM)


@needs_seccomp
def test_kill_filter_kills_the_child() -> None:
    result = run_in_child(_killed_on_kcmp)
    assert result.killed_by == signal.SIGSYS
    assert not result.returned and result.error is None


# ---- (c) pickling, beyond the round trips above ----


def test_exceptions_pickle_with_their_attributes() -> None:
    e = KcmpUnavailableError(errno.ENOSYS, "Function not implemented: why")
    e.reason = "why"
    e.undecided = ((5, 7), (6, 8))
    e.pid = 5
    copy = pickle.loads(pickle.dumps(e))
    assert describe(copy) == describe(e)
    assert copy.undecided == ((5, 7), (6, 8)) and copy.reason == "why" and copy.pid == 5
    assert isinstance(copy, OSError)


@needs_kcmp
def test_native_exceptions_pickle(pipe: tuple[int, int]) -> None:
    gone = gone_pid()
    bad = closed_fd()
    for e in (
        raised(kcmp_rs.same_vm, ME, gone),
        raised(kcmp_rs.same_file, ME, pipe[0], ME, bad),
        raised(kcmp_rs.same_epoll_target, ME, pipe[0], ME, pipe[0], pipe[0]),
    ):
        assert isinstance(e, OSError)
        copy = pickle.loads(pickle.dumps(e))
        assert type(copy) is type(e)
        assert (copy.errno, copy.strerror, copy.args) == (e.errno, e.strerror, e.args)
        assert describe(copy) == describe(e)
        assert describe(copy)["pid"] in (gone, ME)


# ---- (d) bad arguments ----

PID_TYPE_ERRORS = [
    (True, "bool"),
    (False, "bool"),
    (1.0, "float"),
    ("1", "str"),
    (None, "NoneType"),
    (b"1", "bytes"),
]
PID_VALUE_ERRORS = [-1, 0, 2**31, 2**32 + 3, 2**63, 10**30, -(10**30)]
FD_VALUE_ERRORS = [-1, 2**31, 2**32 + 3, 2**64 + 3, 10**30, -(10**30)]


@dataclass(frozen=True)
class Api:
    """A public function, its parameters in order, and the kind of each."""

    name: str
    fn: Callable[..., object]
    params: tuple[tuple[str, str], ...]  # (name, "pid" | "fd" | "index" | "type")


def _apis() -> list[Api]:
    two_pids = (("pid1", "pid"), ("pid2", "pid"))
    apis = [
        Api("kcmp", kcmp_rs.kcmp, (*two_pids, ("type", "type"), ("idx1", "fd"), ("idx2", "fd"))),
        Api(
            "same_file",
            kcmp_rs.same_file,
            (("pid1", "pid"), ("fd1", "fd"), ("pid2", "pid"), ("fd2", "fd")),
        ),
        Api(
            "same_epoll_target",
            kcmp_rs.same_epoll_target,
            (
                ("pid1", "pid"),
                ("fd", "fd"),
                ("pid2", "pid"),
                ("epfd", "fd"),
                ("target_fd", "fd"),
                ("target_index", "index"),
            ),
        ),
        Api("sharing", kcmp_rs.sharing, two_pids),
    ]
    for name in ("same_vm", "same_files", "same_fs", "same_sighand", "same_io", "same_sysvsem"):
        apis.append(Api(name, getattr(kcmp_rs, name), two_pids))
    return apis


def _bad_cases() -> Iterator[Any]:
    for api in _apis():
        for i, (param, kind) in enumerate(api.params):
            if kind == "type":
                for value, tname in [
                    (True, "bool"),
                    ("1", "str"),
                    (None, "NoneType"),
                    (1.0, "float"),
                ]:
                    yield pytest.param(
                        api,
                        i,
                        value,
                        TypeError,
                        f"type must be a KcmpType or int, not {tname}",
                        id=f"{api.name}-type-{value!r}",
                    )
                for value in [8, 9, -1, 2**32, 2**32 + 1, 10**30]:
                    yield pytest.param(
                        api,
                        i,
                        value,
                        ValueError,
                        f"type must be a KcmpType (0..7), got {value}",
                        id=f"{api.name}-type-{value}",
                    )
                continue
            for value, tname in PID_TYPE_ERRORS:
                yield pytest.param(
                    api,
                    i,
                    value,
                    TypeError,
                    f"{param} must be an int, not {tname}",
                    id=f"{api.name}-{param}-{value!r}",
                )
            what, lo, values = {
                "pid": ("a pid", 1, PID_VALUE_ERRORS),
                "fd": ("an fd", 0, FD_VALUE_ERRORS),
                "index": ("an index", 0, FD_VALUE_ERRORS),
            }[kind]
            for value in values:
                msg = f"{param} must be {what} in {lo}..{INT_MAX}, got {value}"
                yield pytest.param(api, i, value, ValueError, msg, id=f"{api.name}-{param}-{value}")


@pytest.fixture(scope="module")
def good_fd() -> Iterator[int]:
    fd = os.open("/dev/null", os.O_RDONLY)
    yield fd
    os.close(fd)


def _good_args(api: Api, fd: int) -> list[Any]:
    values = {"pid": ME, "fd": fd, "index": 0, "type": KcmpType.FILE}
    return [values[kind] for _, kind in api.params]


@pytest.mark.parametrize(("api", "index", "value", "cls", "message"), list(_bad_cases()))
def test_bad_arguments(
    api: Api, index: int, value: object, cls: type[Exception], message: str, good_fd: int
) -> None:
    args = _good_args(api, good_fd)
    args[index] = value
    with pytest.raises(cls) as info:
        api.fn(*args)
    assert type(info.value) is cls
    assert str(info.value) == message
    # By keyword, too: the message names the parameter, not a position.
    kwargs = {name: a for (name, _), a in zip(api.params, args)}
    with pytest.raises(cls) as info:
        api.fn(**kwargs)
    assert str(info.value) == message


@pytest.mark.parametrize("api", _apis(), ids=lambda a: a.name)
def test_good_arguments_pass_validation(api: Api, good_fd: int) -> None:
    """The baseline arguments of the table above are themselves accepted."""
    if KCMP_MISSING is not None:
        pytest.skip(KCMP_MISSING)
    args = _good_args(api, good_fd)
    if api.name == "same_epoll_target":
        e = raised(api.fn, *args)  # /dev/null is no epoll fd: the kernel, not validation
        assert isinstance(e, OSError) and e.errno == errno.EINVAL
    else:
        api.fn(*args)


def test_epoll_tfd_and_task_types_are_refused_where_they_do_not_fit(good_fd: int) -> None:
    e = raised(kcmp_rs.kcmp, ME, ME, KcmpType.EPOLL_TFD, good_fd, 0)
    assert type(e) is ValueError and "same_epoll_target" in str(e)
    e = raised(kcmp_rs.kcmp, ME, ME, 7)
    assert type(e) is ValueError and "same_epoll_target" in str(e)


@pytest.mark.parametrize("value", [1, None, "yes"])
def test_allow_pidfd_getfd_must_be_a_bool(value: object, good_fd: int) -> None:
    e = raised(kcmp_rs.same_file, ME, good_fd, ME, good_fd, allow_pidfd_getfd=value)
    assert type(e) is TypeError
    assert "allow_pidfd_getfd" in str(e), str(e)


@needs_kcmp
def test_fd_beyond_32_bits_does_not_alias(pipe: tuple[int, int]) -> None:
    r, w = pipe
    # The raw call shows the kernel's truncation the validation guards against ...
    assert baseline.kcmp(ME, ME, KcmpType.FILE, 2**32 + r, r) is Order.EQUAL
    # ... and the native API refuses it instead of answering for fd r.
    calls: list[tuple[Callable[..., object], tuple[int, ...]]] = [
        (kcmp_rs.kcmp, (ME, ME, KcmpType.FILE, 2**32 + r, r)),
        (kcmp_rs.same_file, (ME, 2**32 + r, ME, r)),
        (kcmp_rs.same_file, (ME, w, ME, 2**32 + r)),
    ]
    for fn, args in calls:
        e = raised(fn, *args)
        assert type(e) is ValueError and f"got {2**32 + r}" in str(e)


# ---- (e) sharing() and same_*() ----

SAME_FUNCS = {
    "vm": kcmp_rs.same_vm,
    "files": kcmp_rs.same_files,
    "fs": kcmp_rs.same_fs,
    "sighand": kcmp_rs.same_sighand,
    "io": kcmp_rs.same_io,
    "sysvsem": kcmp_rs.same_sysvsem,
}
TASK_TYPES = {
    "vm": KcmpType.VM,
    "files": KcmpType.FILES,
    "fs": KcmpType.FS,
    "sighand": KcmpType.SIGHAND,
    "io": KcmpType.IO,
    "sysvsem": KcmpType.SYSVSEM,
}


def _each_same(pid1: int, pid2: int) -> dict[str, bool]:
    return {name: fn(pid1, pid2) for name, fn in SAME_FUNCS.items()}


def _raw_sharing(pid1: int, pid2: int) -> Sharing:
    return Sharing(
        **{n: baseline.kcmp(pid1, pid2, t) is Order.EQUAL for n, t in TASK_TYPES.items()}
    )


@needs_kcmp
def test_sharing_with_self() -> None:
    everything = Sharing(vm=True, files=True, fs=True, sighand=True, io=True, sysvsem=True)
    assert kcmp_rs.sharing(ME, ME) == everything
    assert type(kcmp_rs.sharing(ME, ME)) is Sharing
    assert _each_same(ME, ME) == dict.fromkeys(SAME_FUNCS, True)


@needs_kcmp
def test_sharing_with_a_thread() -> None:
    """A thread id works as a pid: a thread shares everything with its process."""
    started = threading.Event()
    release = threading.Event()
    tid: list[int] = []

    def body() -> None:
        tid.append(threading.get_native_id())
        started.set()
        release.wait(30)

    t = threading.Thread(target=body)
    t.start()
    try:
        assert started.wait(30)
        assert tid[0] != ME
        got = kcmp_rs.sharing(ME, tid[0])
    finally:
        release.set()
        t.join()
    assert got == Sharing(vm=True, files=True, fs=True, sighand=True, io=True, sysvsem=True)


@needs_kcmp
def test_sharing_with_forked_children(spawn: Spawn) -> None:
    a = spawn()
    b = spawn()
    # Two fresh children: fork copies VM, FILES, FS, SIGHAND; neither has an I/O
    # context nor a SysV undo list, and two absent ones compare equal.
    nothing_but_absent = Sharing(
        vm=False, files=False, fs=False, sighand=False, io=True, sysvsem=True
    )
    assert kcmp_rs.sharing(a.pid, b.pid) == nothing_but_absent
    assert _each_same(a.pid, b.pid) == vars(nothing_but_absent)
    got = kcmp_rs.sharing(ME, a.pid)
    assert got == _raw_sharing(ME, a.pid)
    assert (got.vm, got.files, got.fs, got.sighand) == (False, False, False, False)
    # sysvsem depends on this process's past: creating a thread (CLONE_SYSVSEM)
    # allocates an undo list, which forked children do not get. Checked raw above.
    assert kcmp_rs.sharing(a.pid, a.pid) == Sharing(True, True, True, True, True, True)
    for t in TASK_TYPES.values():
        assert kcmp_rs.kcmp(a.pid, b.pid, t) is baseline.kcmp(a.pid, b.pid, t)


class _Sembuf(ctypes.Structure):
    _fields_ = [
        ("sem_num", ctypes.c_ushort),
        ("sem_op", ctypes.c_short),
        ("sem_flg", ctypes.c_short),
    ]


SEM_UNDO = 0x1000
IPC_PRIVATE = 0
IPC_RMID = 0
_IOPRIO_SET = {"x86_64": 251, "aarch64": 30}.get(platform.machine())


def _give_io_context() -> None:
    """ioprio_set(IOPRIO_WHO_PROCESS, self, best-effort level 4) allocates one."""
    assert _IOPRIO_SET is not None
    if _libc.syscall(_IOPRIO_SET, 1, 0, (2 << 13) | 4) != 0:
        raise OSError(ctypes.get_errno(), "ioprio_set")


@needs_kcmp
@pytest.mark.skipif(_IOPRIO_SET is None, reason=f"no ioprio_set number for {platform.machine()}")
def test_same_io_tells_an_io_context_apart(spawn: Spawn) -> None:
    with_ctx = spawn(_give_io_context)
    fresh = spawn()
    assert kcmp_rs.same_io(with_ctx.pid, fresh.pid) is False
    assert kcmp_rs.same_io(fresh.pid, with_ctx.pid) is False
    assert kcmp_rs.same_io(with_ctx.pid, with_ctx.pid) is True
    assert kcmp_rs.sharing(with_ctx.pid, fresh.pid).io is False


@needs_kcmp
def test_same_sysvsem_tells_an_undo_list_apart(spawn: Spawn) -> None:
    semid = _libc.semget(IPC_PRIVATE, 1, 0o600)
    if semid < 0:
        e = ctypes.get_errno()
        if e == errno.ENOSYS:
            pytest.skip("kernel built without CONFIG_SYSVIPC")
        raise OSError(e, "semget")

    def undo() -> None:
        op = _Sembuf(0, 1, SEM_UNDO)
        if _libc.semop(semid, ctypes.byref(op), 1) != 0:
            raise OSError(ctypes.get_errno(), "semop")

    try:
        with_undo = spawn(undo)
        fresh = spawn()
        assert kcmp_rs.same_sysvsem(with_undo.pid, fresh.pid) is False
        assert kcmp_rs.same_sysvsem(with_undo.pid, with_undo.pid) is True
        assert kcmp_rs.sharing(fresh.pid, with_undo.pid).sysvsem is False
    finally:
        assert _libc.semctl(semid, 0, IPC_RMID) == 0


# ---- (f), (g) random fd sets ----

# A regular file to open many times (one inode, many descriptions): this module.
_REGULAR_FILE = os.path.abspath(__file__)

OPS = st.lists(
    st.one_of(
        st.tuples(st.just("open"), st.sampled_from([_REGULAR_FILE, "/dev/null"])),
        st.tuples(st.just("dup"), st.integers(0, 63)),
        st.tuples(st.sampled_from(["pipe", "socketpair", "epoll"]), st.just(0)),
    ),
    min_size=1,
    max_size=12,
)


def build_fds(ops: list[tuple[str, Any]]) -> dict[int, int]:
    """Opens fds by ``ops``; returns {fd: id of its open file description}."""
    desc: dict[int, int] = {}
    ids = iter(range(10**6))
    for op, arg in ops:
        if op == "open":
            desc[os.open(arg, os.O_RDONLY)] = next(ids)
        elif op == "dup":
            if desc:
                src = sorted(desc)[arg % len(desc)]
                desc[os.dup(src)] = desc[src]
            else:
                desc[os.open("/dev/null", os.O_RDONLY)] = next(ids)
        elif op == "pipe":
            for fd in os.pipe():
                desc[fd] = next(ids)
        elif op == "socketpair":
            for s in socket.socketpair():
                desc[s.detach()] = next(ids)
        else:
            ep = select.epoll()
            desc[os.dup(ep.fileno())] = next(ids)
            ep.close()
    return desc


def truth(desc: dict[int, int]) -> list[tuple[int, ...]]:
    groups: dict[int, list[int]] = {}
    for fd in sorted(desc):
        groups.setdefault(desc[fd], []).append(fd)
    return sorted((tuple(g) for g in groups.values()), key=lambda g: g[0])


@needs_kcmp
@settings(max_examples=50, deadline=None)
@given(ops=OPS)
def test_native_agrees_with_baseline(ops: list[tuple[str, Any]]) -> None:
    desc = build_fds(ops)
    try:
        fds = sorted(desc)
        for a in fds:
            for b in fds:
                native = kcmp_rs.kcmp(ME, ME, KcmpType.FILE, a, b)
                assert native is baseline.kcmp(ME, ME, KcmpType.FILE, a, b), (a, b)
                assert (native is Order.EQUAL) == (desc[a] == desc[b]), (a, b)
                back = kcmp_rs.kcmp(ME, ME, KcmpType.FILE, b, a)
                flipped = {
                    Order.LESS: Order.GREATER,
                    Order.GREATER: Order.LESS,
                    Order.EQUAL: Order.EQUAL,
                }
                assert back is flipped[native], (a, b)
                same = kcmp_rs.same_file(ME, a, ME, b)
                assert same is baseline.same_file(ME, a, ME, b) is (desc[a] == desc[b])
    finally:
        for fd in desc:
            os.close(fd)


@needs_kcmp
@settings(max_examples=30, deadline=None)
@given(ops=OPS)
def test_baseline_classifications_agree(ops: list[tuple[str, Any]]) -> None:
    desc = build_fds(ops)
    try:
        fds = list(desc)
        random.Random(len(fds)).shuffle(fds)
        expected = truth(desc)
        assert baseline.classify_fds(ME, fds) == expected
        assert baseline.classify_fds_planned(ME, fds) == expected
        assert baseline.partition_pairwise(ME, fds + fds[:2]) == expected
    finally:
        for fd in desc:
            os.close(fd)


@needs_kcmp
def test_baseline_classifications_agree_on_another_process(spawn: Spawn) -> None:
    rng = random.Random(1234)
    kinds = ["open", "dup", "dup", "pipe", "socketpair", "epoll"]
    ops = [
        (k, rng.choice([_REGULAR_FILE, "/dev/null"]) if k == "open" else rng.randrange(64))
        for k in rng.choices(kinds, k=40)
    ]

    def setup() -> list[list[int]]:
        return [[fd, d] for fd, d in build_fds(ops).items()]

    child = spawn(setup)
    desc = {fd: d for fd, d in child.data}
    fds = sorted(desc)
    expected = truth(desc)
    assert len(expected) < len(fds)  # some descriptions are shared
    assert baseline.classify_fds(child.pid, fds) == expected
    assert baseline.classify_fds_planned(child.pid, fds) == expected
    assert baseline.partition_pairwise(child.pid, fds) == expected


def test_baseline_does_not_import_the_native_module() -> None:
    source = Path(baseline.__file__).read_text()
    assert "_native" not in re.sub(r'""".*?"""', "", source, flags=re.S)


# ---- metadata ----


def test_version_matches_cargo_toml() -> None:
    cargo = (Path(__file__).resolve().parent.parent / "Cargo.toml").read_text()
    package = cargo.split("[package]", 1)[1].split("\n[", 1)[0]
    match = re.search(r'^version\s*=\s*"([^"]+)"', package, re.M)
    assert match is not None
    assert kcmp_rs.__version__ == match.group(1)
    from importlib.metadata import PackageNotFoundError, version

    try:
        installed = version("kcmp-rs")
    except PackageNotFoundError:  # run from a source tree on PYTHONPATH: no metadata
        return
    assert installed == match.group(1)


def test_spawned_child_reports_and_exits_cleanly() -> None:
    """The helpers themselves: data comes back, the exit status is seen."""
    with spawned(lambda: {"pid": os.getpid()}) as child:
        assert child.data == {"pid": child.pid}
        assert child.status is None
    assert child.exitcode == 0
    with pytest.raises(AssertionError, match="setup failed"), spawned(lambda: 1 // 0):
        pass
    with spawned(expect_exit=None) as child:
        child.kill(signal.SIGTERM)
    assert child.killed_by == signal.SIGTERM
    result = run_in_child(os._exit, 3)
    assert result.exitcode == 3 and not result.returned
    failed = run_in_child(int, "x")
    assert type(failed.raised()) is ValueError and failed.exitcode == 1


def test_support_refresh_and_target_index_are_checked() -> None:
    with pytest.raises(TypeError, match=r"^refresh must be a bool, not int$"):
        kcmp_rs.support(refresh=1)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"^target_index must be an int, not float$"):
        kcmp_rs.same_epoll_target(ME, 0, ME, 0, 0, 1.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"^target_index must be an index in 0\.\.2147483647"):
        kcmp_rs.same_epoll_target(ME, 0, ME, 0, 0, -1)
