"""Errors of the single calls, each triggered for real, and the exception classes.

Every error from the kernel is a ``KcmpError`` and also the OSError subclass Python picks
by errno: ``ProcessGoneError`` (a ProcessLookupError, whose ``kind`` tells "absent",
"zombie" and "exited" apart) for a missing process, ``FdNotOpenError`` for EBADF,
``KcmpFileNotFoundError`` for a missing epoll registration, plain ``KcmpError`` for
EINVAL and EMFILE. The message names the process and fd to blame, ``.pid`` and ``.fd``
say the same, and every exception pickles with its class and attributes. mypy --strict
reads the attributes with their types. Permission errors are in ``test_permissions.py``,
KcmpUnavailableError in ``test_unavailable.py``.
"""

from __future__ import annotations

import errno
import os
import pickle
import resource
import select
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import kcmp_rs
import pytest
from _checks import assert_pickles, check_os_error, describe, needs_kcmp, raised
from _helpers import run_in_child
from conftest import Spawn
from kcmp_rs import (
    FdNotOpenError,
    KcmpError,
    KcmpType,
    KcmpUnavailableError,
    ProcessAccessError,
    ProcessGoneError,
    baseline,
)
from kcmp_rs._errors import error_class

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
            e, ProcessGoneError, errno.ESRCH, f"process {gone} does not exist", gone, None
        )
        assert isinstance(e, ProcessGoneError) and e.kind == "absent"
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
                e, FdNotOpenError, errno.EBADF, f"fd {fd} is not open in process {pid}", pid, fd
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
    not_found = error_class(errno.ENOENT)
    assert not_found.__name__ == "KcmpFileNotFoundError"
    check_os_error(e, not_found, errno.ENOENT, detail, pid, c["ep"])
    assert isinstance(e, FileNotFoundError) and isinstance(e, KcmpError)
    e = raised(kcmp_rs.same_epoll_target, ME, r, pid, c["ep"], c["r"], 1)
    detail = f"epoll fd {c['ep']} of process {pid} has no registration 1 of fd {c['r']}"
    check_os_error(e, not_found, errno.ENOENT, detail, pid, c["ep"])
    e = raised(kcmp_rs.same_epoll_target, ME, r, pid, c["w"], c["r"])
    detail = f"fd {c['w']} of process {pid} is not an epoll fd"
    check_os_error(e, KcmpError, errno.EINVAL, detail, pid, c["w"])


# ---- how a process went away: kind ----


def _gone_calls(pid: int, fd: int) -> list[tuple[Callable[..., object], tuple[object, ...]]]:
    return [
        (kcmp_rs.same_io, (ME, pid)),
        (kcmp_rs.sharing, (pid, ME)),
        (kcmp_rs.same_file, (ME, fd, pid, fd)),
        (kcmp_rs.classify_files, ([(ME, fd), (pid, fd)],)),
    ]


def test_kind_tells_a_zombie_from_a_process_that_is_absent(
    zombie: int, pipe: tuple[int, int]
) -> None:
    r, _ = pipe
    zombie_detail = (
        f"process {zombie} has exited and awaits reaping (a zombie): "
        "it has no resources left to compare"
    )
    for fn, args in _gone_calls(zombie, r):
        e = raised(fn, *args)
        check_os_error(e, ProcessGoneError, errno.ESRCH, zombie_detail, zombie, None)
        assert isinstance(e, ProcessGoneError) and e.kind == "zombie", fn
    os.waitpid(zombie, 0)  # reaped: now the pid names no process at all
    for fn, args in _gone_calls(zombie, r):
        e = raised(fn, *args)
        detail = f"process {zombie} does not exist"
        check_os_error(e, ProcessGoneError, errno.ESRCH, detail, zombie, None)
        assert isinstance(e, ProcessGoneError) and e.kind == "absent", fn


# ---- every errno: a KcmpError, and Python's own class for it ----


@pytest.mark.parametrize("number", sorted(errno.errorcode), ids=errno.errorcode.get)
def test_every_errno_gets_a_kcmp_error_of_pythons_class(number: int) -> None:
    """The class the binding builds for an errno without a class of its own (EAGAIN's
    churn, EMFILE, EOPNOTSUPP, ...) is a KcmpError and what ``OSError(errno, ...)``
    would have been, so ``except BlockingIOError`` keeps working."""
    pythons = type(OSError(number, "x"))
    cls = error_class(number)
    e = cls(number, f"{os.strerror(number)}: detail", pid=7, fd=None)
    assert isinstance(e, KcmpError) and isinstance(e, pythons)
    assert (type(e) is KcmpError) == (pythons is OSError)
    assert e.errno == number and (e.pid, e.fd) == (7, None)
    assert str(e) == f"[Errno {number}] {os.strerror(number)}: detail"
    assert_pickles(e)
    assert type(pickle.loads(pickle.dumps(e))) is cls


def _open_fds_out_of_fds() -> BaseException:
    """``open_fds`` of this process once every fd the limit allows is taken."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (64, hard))
    try:
        while True:
            os.open("/dev/null", os.O_RDONLY)
    except OSError as e:
        assert e.errno == errno.EMFILE
    return raised(kcmp_rs.open_fds, os.getpid())


def test_emfile_is_a_kcmp_error_naming_the_process() -> None:
    result = run_in_child(_open_fds_out_of_fds)
    e = result.unwrap()  # came back pickled: class and attributes survive that
    assert type(e) is KcmpError and isinstance(e, OSError)
    assert e.errno == errno.EMFILE and (e.pid, e.fd) == (result.pid, None)
    assert str(e).startswith(f"[Errno {errno.EMFILE}] {os.strerror(errno.EMFILE)}: "), e
    assert f"/proc/{result.pid}/fd" in str(e)


def test_classes_keep_pythons_own_and_are_exported() -> None:
    assert issubclass(ProcessGoneError, ProcessLookupError)
    assert issubclass(ProcessAccessError, PermissionError)
    for cls in (ProcessGoneError, ProcessAccessError, FdNotOpenError, KcmpUnavailableError):
        assert issubclass(cls, KcmpError) and cls.__module__ == "kcmp_rs._errors"
        assert cls.__name__ in kcmp_rs.__all__ and getattr(kcmp_rs, cls.__name__) is cls
    assert issubclass(KcmpError, OSError) and "KcmpError" in kcmp_rs.__all__
    # EBADF is plain OSError in Python; KcmpUnavailableError keeps its own errnos apart.
    assert not issubclass(FdNotOpenError, PermissionError)
    assert not issubclass(KcmpUnavailableError, PermissionError)


# ---- pickling, beyond the round trips above ----


def test_exceptions_pickle_with_their_attributes() -> None:
    made: list[KcmpError] = [
        KcmpUnavailableError(
            errno.ENOSYS, "Function not implemented: why", reason="why", undecided=[(5, 7)]
        ),
        ProcessGoneError(errno.ESRCH, "No such process: gone", pid=5, kind="exited"),
        FdNotOpenError(errno.EBADF, "Bad file descriptor: fd 7", pid=5, fd=7),
        ProcessAccessError(errno.EPERM, "Operation not permitted: no", pid=5),
        KcmpError(errno.EINVAL, "Invalid argument: x", pid=5, fd=7),
    ]
    for e in made:
        if sys.version_info >= (3, 11):
            e.add_note("a note")  # kept too: notes live in the instance dict
        for protocol in range(pickle.HIGHEST_PROTOCOL + 1):
            copy = pickle.loads(pickle.dumps(e, protocol))
            assert type(copy) is type(e)
            assert (copy.errno, copy.strerror, copy.args) == (e.errno, e.strerror, e.args)
            assert vars(copy) == vars(e) and str(copy) == str(e)
    unavailable = made[0]
    assert isinstance(unavailable, KcmpUnavailableError)
    assert (unavailable.reason, unavailable.undecided) == ("why", ((5, 7),))
    assert (unavailable.pid, unavailable.fd) == (None, None)
    default = KcmpUnavailableError(errno.EPERM, "Operation not permitted: the reason")
    assert default.reason == "Operation not permitted: the reason" and default.undecided == ()


@needs_kcmp
def test_native_exceptions_pickle(pipe: tuple[int, int]) -> None:
    gone = gone_pid()
    bad = closed_fd()
    for e in (
        raised(kcmp_rs.same_vm, ME, gone),
        raised(kcmp_rs.same_file, ME, pipe[0], ME, bad),
        raised(kcmp_rs.same_epoll_target, ME, pipe[0], ME, pipe[0], pipe[0]),
    ):
        assert isinstance(e, KcmpError)
        copy = pickle.loads(pickle.dumps(e))
        assert type(copy) is type(e)
        assert (copy.errno, copy.strerror, copy.args) == (e.errno, e.strerror, e.args)
        assert describe(copy) == describe(e) and vars(copy) == vars(e)
        assert describe(copy)["pid"] in (gone, ME)
    assert vars(raised(kcmp_rs.same_vm, ME, gone)) == {"pid": gone, "fd": None, "kind": "absent"}


# ---- types: what mypy --strict sees ----

_TYPED_USE = """
from __future__ import annotations

import kcmp_rs


def why(pid: int) -> tuple[int, int | None, str] | None:
    try:
        kcmp_rs.same_vm(pid, pid)
    except kcmp_rs.ProcessGoneError as e:
        gone: int = e.pid
        fd: int | None = e.fd
        if e.kind == "zombie":
            return (gone, fd, "a zombie")
        kind: str = e.kind
        return (gone, fd, kind)
    except ProcessLookupError:
        return None
    except kcmp_rs.FdNotOpenError as e:
        where: tuple[int, int] = (e.pid, e.fd)
        return (*where, "not open")
    except kcmp_rs.ProcessAccessError as e:
        denied: int = e.pid
        return (denied, None, "denied")
    except kcmp_rs.KcmpUnavailableError as e:
        undecided: tuple[tuple[int, int], ...] = e.undecided
        return (len(undecided), e.fd, e.reason)
    except kcmp_rs.KcmpError as e:
        maybe: int | None = e.pid
        return None if maybe is None else (maybe, e.fd, e.strerror or "")
    return None
"""

# Each line is wrong in a way mypy must see (and only mypy: it all runs).
_MISTYPED_USE = """
from __future__ import annotations

import kcmp_rs

try:
    kcmp_rs.same_vm(1, 1)
except kcmp_rs.ProcessGoneError as e:
    as_int: int = e.kind
    typo = e.kind == "zombi"
    fd: int = e.fd
except kcmp_rs.KcmpError as e:
    pid: int = e.pid
"""


def test_mypy_strict_reads_pid_fd_and_kind(tmp_path: Path) -> None:
    """Typed use passes ``mypy --strict``; each mistyped line is an error."""
    pytest.importorskip("mypy", reason="mypy is a development requirement")
    (tmp_path / "typed_use.py").write_text(_TYPED_USE)
    (tmp_path / "mistyped_use.py").write_text(_MISTYPED_USE)
    done = subprocess.run(
        [
            *(sys.executable, "-m", "mypy", "--strict", "--no-incremental", "--no-error-summary"),
            *("--cache-dir", str(tmp_path / "cache"), "typed_use.py", "mistyped_use.py"),
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    errors = [line for line in done.stdout.splitlines() if ": error: " in line]
    assert not [e for e in errors if e.startswith("typed_use.py")], done.stdout
    errors.sort(key=lambda e: int(e.split(":")[1]))
    lines = [int(e.split(":")[1]) for e in errors]
    assert lines == [9, 10, 11, 13], done.stdout + done.stderr
    assert "[comparison-overlap]" in errors[1], errors
    assert done.returncode == 1, done.stdout + done.stderr
