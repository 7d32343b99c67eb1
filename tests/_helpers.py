"""Shared test helpers: processes the tests start themselves, fds, and groupings.

- ``spawned(setup)``: a context manager forking a child that runs ``setup()`` (opens
  fds, sets up an epoll set, ...), reports its JSON-able result back, and stays alive
  until the context exits; it is then released, reaped and its exit status checked.
  ``Spawn`` is the type of the ``spawn`` fixture (``conftest.py``) that wraps it.
- ``run_in_child(func, *args)``: runs ``func`` in a forked child and returns what it
  returned or raised as data (``ChildResult``), with the child's wait status; for
  things that must not happen in the test process (seccomp filters, dropping
  privileges: ``drop_to_nobody``).
- ``keep_only(fds)`` and ``thread_forever()``, for a child's setup: close every fd
  but those (0-2 on /dev/null), start a thread sharing its fd table.
- ``new_cgroup(name)``: a cgroup v2 group made for a test (``own_cgroup()``: ours).
- ``fd_snapshot()``: this process's open fds and their targets, for leak checks;
  ``nofile(extra)`` makes room for more fds; ``dup_at_least`` places a copy high up;
  ``dupfd_query_works()`` says whether the kernel has F_DUPFD_QUERY.
- ``pairwise_groups`` (the brute-force truth), ``canonical`` (an order-free form of a
  classification) and ``partition`` (the groups of labelled items).
- ``libc``: one ctypes handle on the C library for every test module.

Every child ends with ``os._exit``: none of pytest's cleanup ever runs twice. The
fixtures in ``conftest.py`` wrap these for tests that want teardown done for them.

This module never imports kcmp_rs at import time: ``_fallback_helpers.py``, run as a
script, imports it before it installs a seccomp filter and only then imports kcmp_rs.
Skip marks and checks that need the package live in ``_checks.py``.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import json
import os
import pickle
import resource
import select
import signal
import threading
import time
import traceback
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

import pytest
from _seccomp import F_DUPFD_QUERY

__all__ = [
    "NOBODY",
    "OTHER_UID",
    "ChildError",
    "ChildProcess",
    "ChildResult",
    "ExceptionInfo",
    "Spawn",
    "canonical",
    "describe_status",
    "drop_privileges",
    "drop_to_nobody",
    "dup_at_least",
    "dupfd_query_works",
    "fd_snapshot",
    "fork",
    "keep_only",
    "libc",
    "new_cgroup",
    "nofile",
    "own_cgroup",
    "pairwise_groups",
    "partition",
    "run_in_child",
    "spawned",
    "status_value",
    "thread_count",
    "thread_forever",
]

T = TypeVar("T")

#: How long a child may take to report or to exit before it is killed (seconds).
DEFAULT_TIMEOUT = 30.0

_PR_SET_PDEATHSIG = 1
#: The C library, with ``use_errno`` so ``ctypes.get_errno()`` is meaningful after a call.
libc = ctypes.CDLL(None, use_errno=True)
libc.prctl.restype = ctypes.c_int
libc.prctl.argtypes = [
    ctypes.c_int,
    ctypes.c_ulong,
    ctypes.c_ulong,
    ctypes.c_ulong,
    ctypes.c_ulong,
]


class ChildError(AssertionError):
    """A child failed in a way the test did not ask for (crashed, hung, setup raised)."""


# ---- fork ----


def status_value(field: str) -> int:
    """A numeric field of /proc/self/status, e.g. "Threads" or "VmRSS" (KiB)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"no {field}: line in /proc/self/status")


def thread_count() -> int:
    """The number of OS threads of this process (from /proc, so Rust threads count)."""
    return status_value("Threads")


def fork() -> int:
    """``os.fork()`` that stays quiet under ``filterwarnings = error`` on Python 3.12+.

    Forking a multi-threaded process can deadlock the child on a lock another thread
    held (3.12+ warns with a DeprecationWarning, which pytest turns into an error). We
    fork when this process is single-threaded; threads that were just joined may take
    a moment to disappear from /proc, so we wait briefly for that. If threads are still
    running, the warning is suppressed for this one call: our children only run the
    test's function and ``os._exit``, and every read from a child has a timeout, so a
    deadlocked child fails its test instead of hanging the run.
    """
    deadline = time.monotonic() + 1.0
    while thread_count() > 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    if thread_count() == 1:
        return os.fork()
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore",
            message=r".*use of fork\(\) may lead to deadlocks",
            category=DeprecationWarning,
        )
        return os.fork()


@contextlib.contextmanager
def zombie_child() -> Iterator[int]:
    """A child of this process that has exited and is not reaped yet (a zombie) for the
    block, reaped after it. ``waitid(WNOWAIT)`` returns once the child is a zombie and
    leaves it one: no polling of /proc."""
    pid = fork()
    if pid == 0:  # pragma: no cover - the child
        os._exit(0)
    try:
        os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT)
        yield pid
    finally:
        with contextlib.suppress(ChildProcessError):  # the block may have reaped it
            os.waitpid(pid, 0)


def _child_exit(code: int) -> None:
    """Leaves a child at once: no atexit handlers, no pytest teardown, no buffers."""
    os._exit(code)


def _die_with_parent() -> None:
    """Asks the kernel to SIGKILL this child if the test process dies first."""
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def _read_all(fd: int, deadline: float) -> bytes | None:
    """Reads ``fd`` to EOF; None when the deadline passes first."""
    chunks: list[bytes] = []
    # poll, not select: a test holding 1,000+ fds gets report pipes past FD_SETSIZE.
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return None
        if not poller.poll(left * 1000):
            return None
        chunk = os.read(fd, 65536)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


def _wait(pid: int, deadline: float) -> int | None:
    """waitpid with a deadline: the raw wait status, or None if still running."""
    while True:
        got, status = os.waitpid(pid, os.WNOHANG)
        if got == pid:
            return status
        if time.monotonic() >= deadline:
            return None
        time.sleep(0.005)


def _kill_and_reap(pid: int) -> int:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    return os.waitpid(pid, 0)[1]


def _exit_code(status: int | None) -> int | None:
    """The exit code of a wait status after a normal exit, else None."""
    if status is None or not os.WIFEXITED(status):
        return None
    return os.WEXITSTATUS(status)


def _killing_signal(status: int | None) -> int | None:
    """The signal that ended a process, from its wait status, if one did."""
    if status is None or not os.WIFSIGNALED(status):
        return None
    return os.WTERMSIG(status)


def describe_status(status: int) -> str:
    """A wait status in words: "exited with 0", "killed by SIGSYS"."""
    if os.WIFEXITED(status):
        return f"exited with {os.WEXITSTATUS(status)}"
    if os.WIFSIGNALED(status):
        return f"killed by {signal.Signals(os.WTERMSIG(status)).name}"
    return f"wait status {status:#x}"


# ---- in a child ----


def keep_only(keep: set[int]) -> None:
    """Closes every fd but ``keep``; 0-2 become one open of /dev/null of its own."""
    for name in os.listdir("/proc/self/fd"):
        if int(name) not in keep:
            with contextlib.suppress(OSError):
                os.close(int(name))
    null = os.open(os.devnull, os.O_RDWR)
    for std in (0, 1, 2):
        if std != null:
            os.dup2(null, std)
    if null > 2:
        os.close(null)


def thread_forever() -> int:
    """Starts a thread that never ends (a daemon, blocked) and returns its thread id
    once it runs: a second task sharing this process's fd table."""
    started = threading.Event()
    tids: list[int] = []

    def run() -> None:
        tids.append(threading.get_native_id())
        started.set()
        threading.Event().wait()

    threading.Thread(target=run, daemon=True).start()
    started.wait(DEFAULT_TIMEOUT)
    return tids[0]


def _cgroup2_mount() -> str | None:
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            if fields[fields.index("-") + 1] == "cgroup2":
                return fields[4]
    return None


def own_cgroup() -> str | None:
    """This process's cgroup v2 path from /proc/self/cgroup, read here as the truth."""
    with open("/proc/self/cgroup") as f:
        return next((line[3:].rstrip("\n") for line in f if line.startswith("0::")), None)


@contextlib.contextmanager
def new_cgroup(name: str) -> Iterator[tuple[str, str]]:
    """``(directory, path as /proc/PID/cgroup shows it)`` of a new cgroup v2 group
    ``name`` under this process's own, removed at the end (its processes must be gone
    by then). Skips where the hierarchy is not writable."""
    mount = _cgroup2_mount()
    if mount is None:
        pytest.skip("no cgroup v2 hierarchy is mounted (/proc/self/mountinfo)")
    own = own_cgroup()
    if own is None or not own.startswith("/"):
        pytest.skip("this process has no cgroup v2 path in /proc/self/cgroup")
    directory = os.path.join(mount + own, name)
    try:
        os.mkdir(directory)
    except OSError as err:
        pytest.skip(f"cannot create a cgroup in {mount + own}: {err.strerror}")
    try:
        yield directory, own.rstrip("/") + "/" + name
    finally:
        deadline = time.monotonic() + 10
        while True:
            try:
                os.rmdir(directory)
                break
            except OSError as err:  # EBUSY while a killed member is still leaving it
                if err.errno != errno.EBUSY or time.monotonic() > deadline:
                    raise
                time.sleep(0.01)


# ---- long-lived children ----

# Control pipes of children still alive: every new child closes them, so that only the
# test process holds a child's release pipe (otherwise a sibling's inherited copy
# would keep it open and the child would never see EOF).
_live_controls: set[int] = set()


@dataclass
class ChildProcess:
    """A child started by ``spawned``: its pid, the data its setup reported, and, once
    it has been stopped, its wait status."""

    pid: int
    data: Any
    _control: int = field(repr=False)
    status: int | None = None

    @property
    def exitcode(self) -> int | None:
        """The exit code if the child exited normally, else None."""
        return _exit_code(self.status)

    @property
    def killed_by(self) -> int | None:
        """The signal that killed the child, if one did."""
        return _killing_signal(self.status)

    def stop(self, timeout: float = DEFAULT_TIMEOUT) -> int:
        """Releases the child (it exits 0) and reaps it; SIGKILL if it does not exit
        within ``timeout``. Returns the wait status; idempotent."""
        if self.status is not None:
            return self.status
        if self._control >= 0:
            _live_controls.discard(self._control)
            os.close(self._control)
            self._control = -1
        status = _wait(self.pid, time.monotonic() + timeout)
        self.status = status if status is not None else _kill_and_reap(self.pid)
        return self.status

    def kill(self, sig: int = signal.SIGKILL) -> int:
        """Sends ``sig``, then reaps the child (see ``stop``). Returns the wait status."""
        if self.status is None:
            os.kill(self.pid, sig)
        return self.stop()


def _spawned_child_main(setup: Callable[[], Any] | None, report_w: int, control_r: int) -> None:
    """The child side of ``spawned``: never returns."""
    code = 0
    try:
        _die_with_parent()
        for fd in _live_controls:
            with contextlib.suppress(OSError):
                os.close(fd)
        try:
            payload = {"data": setup() if setup is not None else None}
        except BaseException:
            payload = {"error": traceback.format_exc()}
            code = 1
        os.write(report_w, json.dumps(payload).encode())
        os.close(report_w)
        if code == 0:
            # Block until the test process closes its end (or dies).
            while os.read(control_r, 1):
                pass
    except BaseException:
        code = 2
    _child_exit(code)


@contextlib.contextmanager
def spawned(
    setup: Callable[[], Any] | None = None,
    *,
    expect_exit: int | None = 0,
    timeout: float = DEFAULT_TIMEOUT,
) -> Iterator[ChildProcess]:
    """Forks a child that runs ``setup()`` and stays alive until the context exits.

    ``setup`` runs in the child right after the fork (the child inherits the test
    process's fds); its return value, which must be JSON-able (fd numbers, a dict of
    them), is available as ``child.data``. If ``setup`` raises, ``ChildError`` carries
    the child's traceback. On exit the child is released: it exits 0 unless something
    killed it earlier; with ``expect_exit`` an int, the exit code is checked (pass None
    when the test kills the child or checks ``child.status`` itself). A child that
    does not report or exit within ``timeout`` seconds is killed and ChildError raised.

    Example::

        def setup() -> dict[str, int]:
            r, w = os.pipe()
            return {"r": r, "w": w}

        with spawned(setup) as child:
            same_file(child.pid, child.data["r"], child.pid, child.data["w"])
    """
    report_r, report_w = os.pipe()
    control_r, control_w = os.pipe()
    pid = fork()
    if pid == 0:  # pragma: no cover - the child never returns
        os.close(report_r)
        os.close(control_w)
        _spawned_child_main(setup, report_w, control_r)
    os.close(report_w)
    os.close(control_r)
    _live_controls.add(control_w)
    child = ChildProcess(pid=pid, data=None, _control=control_w)
    try:
        raw = _read_all(report_r, time.monotonic() + timeout)
        os.close(report_r)
        if raw is None:
            child.kill()
            raise ChildError(f"child {pid} did not report within {timeout}s")
        if not raw:
            status = child.stop()
            raise ChildError(f"child {pid} {describe_status(status)} before reporting")
        payload = json.loads(raw)
        if "error" in payload:
            child.stop()
            raise ChildError(f"setup failed in child {pid}:\n{payload['error']}")
        child.data = payload["data"]
        yield child
    finally:
        status = child.stop(timeout)
    if expect_exit is not None and child.exitcode != expect_exit:
        raise ChildError(f"child {pid} {describe_status(status)}, expected exit code {expect_exit}")


class Spawn(Protocol):
    """The ``spawn`` fixture: ``spawn(setup=None, *, expect_exit=0) -> ChildProcess``."""

    def __call__(
        self, setup: Callable[[], Any] | None = None, *, expect_exit: int | None = 0
    ) -> ChildProcess: ...


@contextlib.contextmanager
def reopened_after_fork(spawn: Spawn, directory: str) -> Iterator[tuple[int, int, int]]:
    """This process opens a file, forks a child (``spawn``), then opens the file again:
    yields ``(child_pid, inherited, again)``; the child holds the file only through the
    inherited description. Both fds are closed after."""
    path = os.path.join(directory, "f")
    with open(path, "w") as f:
        f.write("x")
    inherited = os.open(path, os.O_RDONLY)
    try:
        child = spawn()
        again = os.open(path, os.O_RDONLY)
        try:
            yield child.pid, inherited, again
        finally:
            os.close(again)
    finally:
        os.close(inherited)


# ---- one-shot children ----


@dataclass(frozen=True)
class ExceptionInfo:
    """An exception raised in a child, as plain data (it crossed a pipe pickled).

    ``exception`` is the exception itself when it survived pickling (the kcmp_rs ones
    do, with their attributes), else None; the other fields are always filled.
    """

    type_name: str  # "module.QualName"
    message: str  # str(exc)
    errno: int | None
    strerror: str | None
    attributes: dict[str, Any]  # the picklable entries of exc.__dict__ (pid, fd, ...)
    traceback: str
    exception: BaseException | None


@dataclass(frozen=True)
class ChildResult(Generic[T]):
    """What ``run_in_child`` saw: the wait status, and the value or the exception."""

    pid: int
    status: int
    returned: bool
    value: T | None
    error: ExceptionInfo | None

    @property
    def exitcode(self) -> int | None:
        return _exit_code(self.status)

    @property
    def killed_by(self) -> int | None:
        return _killing_signal(self.status)

    def unwrap(self) -> T:
        """The value returned; ChildError (with the child's traceback) otherwise."""
        if self.error is not None:
            raise ChildError(f"child {self.pid} raised:\n{self.error.traceback}")
        if not self.returned or self.exitcode != 0:
            raise ChildError(f"child {self.pid} {describe_status(self.status)} without a result")
        return self.value  # type: ignore[return-value]

    def raised(self) -> BaseException:
        """The exception the child raised (after a normal exit with code 1)."""
        if self.error is None or self.exception is None:
            raise ChildError(
                f"child {self.pid} {describe_status(self.status)}, returned={self.returned}, "
                f"value={self.value!r}: no exception came back"
            )
        assert self.exitcode == 1, describe_status(self.status)
        return self.exception

    @property
    def exception(self) -> BaseException | None:
        return None if self.error is None else self.error.exception


def _exception_info(exc: BaseException) -> ExceptionInfo:
    attributes: dict[str, Any] = {}
    for name, value in vars(exc).items():
        try:
            pickle.dumps(value)
        except Exception:
            continue
        attributes[name] = value
    try:
        pickle.loads(pickle.dumps(exc))
        kept: BaseException | None = exc
    except Exception:
        kept = None
    return ExceptionInfo(
        type_name=f"{type(exc).__module__}.{type(exc).__qualname__}",
        message=str(exc),
        errno=getattr(exc, "errno", None),
        strerror=getattr(exc, "strerror", None),
        attributes=attributes,
        traceback="".join(traceback.format_exception(type(exc), exc, exc.__traceback__)),
        exception=kept,
    )


# Over the mccabe limit: fork, run, report and reap read better as one function.
def run_in_child(  # noqa: C901
    func: Callable[..., T], *args: Any, timeout: float = DEFAULT_TIMEOUT
) -> ChildResult[T]:
    """Runs ``func(*args)`` in a forked child; returns its outcome as a ``ChildResult``.

    The child exits 0 after returning (the value must pickle), 1 after raising (the
    exception comes back as ``ExceptionInfo``), 2 if the outcome could not be sent.
    Anything the child does to itself (seccomp filters, setuid) stays in the child.
    Check ``result.unwrap()`` / ``result.raised()`` / ``result.status``: the wait status
    is the test's to check. A child still running after ``timeout`` is killed and
    ChildError raised.
    """
    report_r, report_w = os.pipe()
    pid = fork()
    if pid == 0:  # pragma: no cover - the child never returns
        code = 2
        try:
            os.close(report_r)
            _die_with_parent()
            for fd in _live_controls:
                with contextlib.suppress(OSError):
                    os.close(fd)
            try:
                outcome: tuple[bool, Any] = (True, func(*args))
                code = 0
            except BaseException as exc:
                outcome = (False, _exception_info(exc))
                code = 1
            try:
                data = pickle.dumps(outcome)
            except Exception as exc:
                data = pickle.dumps((False, _exception_info(exc)))
                code = 2
            view = memoryview(data)
            while view:
                view = view[os.write(report_w, view) :]
            os.close(report_w)
        except BaseException:
            code = 2
        _child_exit(code)
    os.close(report_w)
    deadline = time.monotonic() + timeout
    try:
        raw = _read_all(report_r, deadline)
    finally:
        os.close(report_r)
    if raw is None:
        _kill_and_reap(pid)
        raise ChildError(f"child {pid} running {func!r} did not finish within {timeout}s")
    status = _wait(pid, deadline)
    if status is None:
        _kill_and_reap(pid)
        raise ChildError(f"child {pid} running {func!r} did not exit within {timeout}s")
    if not raw:
        return ChildResult(pid=pid, status=status, returned=False, value=None, error=None)
    returned, payload = pickle.loads(raw)
    if returned:
        return ChildResult(pid=pid, status=status, returned=True, value=payload, error=None)
    return ChildResult(pid=pid, status=status, returned=False, value=None, error=payload)


#: The unprivileged uids the permission tests use (root owns the test process).
NOBODY = 65534
OTHER_UID = 65533

_PR_SET_DUMPABLE = 4


def drop_privileges(uid: int, *, dumpable: bool = True) -> None:
    """Becomes ``uid`` (and gid ``uid``, no supplementary groups) for good: irreversible,
    so only in a child (``run_in_child``, ``spawned``) started as root. ``dumpable``
    keeps it inspectable by processes of the same user (its own children); changing
    uid would otherwise make it non-dumpable."""
    os.setgroups([])
    os.setgid(uid)
    os.setuid(uid)
    if dumpable and libc.prctl(_PR_SET_DUMPABLE, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_DUMPABLE) failed")


def drop_to_nobody() -> None:
    """``drop_privileges(NOBODY)`` as the kernel leaves it: not dumpable."""
    drop_privileges(NOBODY, dumpable=False)


# ---- fds ----


def fd_snapshot() -> frozenset[tuple[int, str]]:
    """This process's open fds as ``(fd, target)`` pairs (``readlink`` of
    ``/proc/self/fd/N``): for leak checks (take one before and one after, compare), and
    to see which fds a call holds while it runs.

    The fd ``os.listdir`` itself used is closed by the time its target is read and is
    left out.
    """
    pairs = set()
    for name in os.listdir("/proc/self/fd"):
        try:
            pairs.add((int(name), os.readlink(f"/proc/self/fd/{name}")))
        except FileNotFoundError:
            continue
    return frozenset(pairs)


@contextlib.contextmanager
def nofile(extra: int) -> Iterator[None]:
    """Room for ``extra`` more fds: raises the soft RLIMIT_NOFILE (within the hard
    limit) for the duration, restored after; skips the test when the hard limit is too
    low."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = len(fd_snapshot()) + extra + 64
    if hard != resource.RLIM_INFINITY and hard < need:
        pytest.skip(f"needs {need} fds, RLIMIT_NOFILE hard limit is {hard}")
    if soft != resource.RLIM_INFINITY and soft < need:
        resource.setrlimit(resource.RLIMIT_NOFILE, (need, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def dup_at_least(fd: int, at_least: int) -> int:
    """A close-on-exec copy of ``fd`` numbered ``at_least`` or above (out of the way of
    low numbers a test dup2s onto, or so that fd order differs from open order)."""
    return fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, at_least)


def dupfd_query_works() -> bool:
    """Whether this kernel has ``fcntl(F_DUPFD_QUERY)`` (Linux 6.10+), asked directly
    rather than through the package, so tests can check what the package reports."""
    fd = os.open("/dev/null", os.O_RDONLY)
    try:
        return fcntl.fcntl(fd, F_DUPFD_QUERY, fd) == 1
    except OSError:
        return False
    finally:
        os.close(fd)


# ---- groupings ----


def canonical(groups: Iterable[Iterable[Any]]) -> list[tuple[Any, ...]]:
    """A classification as a sorted list of sorted tuples (lists from JSON become
    tuples): two classifications are the same partition iff their forms are equal."""

    def norm(x: Any) -> Any:
        return tuple(x) if isinstance(x, list) else x

    return sorted(tuple(sorted(norm(x) for x in g)) for g in groups)


def partition(labels: dict[Any, int]) -> list[tuple[Any, ...]]:
    """The partition of ``labels``' keys by label, in ``canonical`` form: the truth when
    each label names an open file description."""
    by_label: dict[int, list[Any]] = {}
    for item, label in labels.items():
        by_label.setdefault(label, []).append(item)
    return canonical(by_label.values())


def pairwise_groups(
    refs: Sequence[tuple[int, int]],
    same: Callable[[tuple[int, int], tuple[int, int]], bool] | None = None,
) -> list[tuple[tuple[int, int], ...]]:
    """The brute-force truth: ``same`` (default: the ctypes baseline's same_file) asked
    about every pair, union-find; groups ascending, ordered by their smallest ref."""
    from kcmp_rs import baseline

    def baseline_same(a: tuple[int, int], b: tuple[int, int]) -> bool:
        return baseline.same_file(a[0], a[1], b[0], b[1])

    ask = same or baseline_same
    parent = list(range(len(refs)))

    def root(i: int) -> int:
        while parent[i] != i:
            i = parent[i]
        return i

    for i in range(len(refs)):
        for j in range(i + 1, len(refs)):
            if ask(refs[i], refs[j]):
                parent[root(j)] = root(i)
    groups: dict[int, list[tuple[int, int]]] = {}
    for i, r in enumerate(refs):
        groups.setdefault(root(i), []).append(r)
    return canonical(groups.values())
