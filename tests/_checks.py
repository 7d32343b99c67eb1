"""Skip marks for what this machine allows, and exact checks of the package's exceptions.

- ``needs_kcmp`` / ``KCMP_MISSING``: kcmp(2) works in this process (asked through the
  ctypes baseline, not the package under test); ``needs_seccomp``: this architecture
  has a table in ``_seccomp.py``; ``needs_root``: the test process runs as root.
- ``check_os_error``: an exception is exactly ``cls(errno, "<strerror>: <detail>")``
  with the ``pid`` and ``fd`` attributes given, and pickles (``assert_pickles``).
- ``raised(fn, ...)``: the exception a call raises, failing if it returns.
- ``outcome(fn, ...)`` / ``unraise``: a child reports several calls at once, each a
  value or a ``Raised`` (the exception itself, plus what the child saw of it), and
  the test checks the exception survived pickling. (``_fallback_helpers.attempt`` is
  the JSON-able form, which also records fd changes.)
- ``one_line(exc)``: an exception in one line, for failure messages.

Unlike ``_helpers.py`` this module imports kcmp_rs: test modules only, never the
``_fallback_helpers.py`` script.
"""

from __future__ import annotations

import errno
import os
import pickle
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from _seccomp import SeccompUnsupported, syscall_numbers
from kcmp_rs import KcmpType, baseline, open_fds

__all__ = [
    "KCMP_MISSING",
    "SECCOMP_MISSING",
    "Raised",
    "assert_pickles",
    "check_os_error",
    "describe",
    "holders_truth",
    "needs_kcmp",
    "needs_root",
    "needs_seccomp",
    "one_line",
    "outcome",
    "raised",
    "unraise",
]


# ---- skip marks ----


def _kcmp_missing() -> str | None:
    """Why kcmp cannot be exercised on this machine, or None when it can."""
    me = os.getpid()
    try:
        baseline.kcmp(me, me, KcmpType.VM)
    except OSError as e:
        return f"kcmp(2) does not work in this process: {e}"
    return None


def _seccomp_missing() -> str | None:
    try:
        syscall_numbers()
    except SeccompUnsupported as e:
        return str(e)
    return None


KCMP_MISSING = _kcmp_missing()
needs_kcmp = pytest.mark.skipif(KCMP_MISSING is not None, reason=KCMP_MISSING or "")
SECCOMP_MISSING = _seccomp_missing()
needs_seccomp = pytest.mark.skipif(SECCOMP_MISSING is not None, reason=SECCOMP_MISSING or "")
needs_dot = pytest.mark.skipif(
    shutil.which("dot") is None,
    reason="Graphviz's dot is not installed (as root on Debian, make setup installs it: "
    "scripts/setup-system.sh)",
)
needs_root = pytest.mark.skipif(
    os.geteuid() != 0, reason="needs root (to drop to uid 65534, or for namespaces)"
)


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


def one_line(exc: BaseException) -> str:
    """An exception for a failure message: class, errno and message."""
    return f"{type(exc).__name__}(errno={getattr(exc, 'errno', None)}, {exc})"


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


# ---- brute force ----


def holders_truth(target: tuple[int, int], pids: list[int]) -> list[tuple[int, int]]:
    """Every (pid, fd) of ``pids`` the ctypes baseline says is ``target``'s open file
    description: the answer ``holders`` must give, found the slow way."""
    tp, tf = target
    found = []
    for pid in pids:
        for fd in open_fds(pid):
            try:
                if baseline.kcmp(tp, pid, KcmpType.FILE, tf, fd) == 0:
                    found.append((pid, fd))
            except OSError as err:
                assert err.errno == errno.EBADF  # closed since it was listed
    return sorted(found)
