"""Errors of the single calls, each triggered for real: the errno picks the OSError
subclass (ProcessLookupError for a missing process, plain OSError for EBADF and
EINVAL, FileNotFoundError for a missing epoll registration), the message names the
process and fd to blame, ``.pid`` and ``.fd`` say the same, and every exception
pickles with its attributes. Permission errors are in ``test_permissions.py``,
KcmpUnavailableError in ``test_unavailable.py``.
"""

from __future__ import annotations

import errno
import os
import pickle
import select
from collections.abc import Callable

import kcmp_rs
from _checks import check_os_error, describe, needs_kcmp, raised
from _helpers import run_in_child
from conftest import Spawn
from kcmp_rs import KcmpType, KcmpUnavailableError, baseline

ME = os.getpid()


# ---- each errno, for real ----


def closed_fd() -> int:
    """An fd number that is not open (opened and closed just now)."""
    fd = os.open("/dev/null", os.O_RDONLY)
    os.close(fd)
    return fd


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


# ---- pickling, beyond the round trips above ----


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
