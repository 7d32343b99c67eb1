"""classify_fds in this process: differential against brute force, kernel order, the
package's own fds, bad arguments, huge inputs. Call counts: ``test_counts.py``.

Cross-process and task grouping: ``test_classify_procs.py``. Races, GIL release,
Ctrl-C and memory: ``test_classify_stress.py``.
"""

from __future__ import annotations

import enum
import errno
import os
import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, Callable, Literal

import kcmp_rs
import pytest
from _fdset import FdSet, scratch_files
from _helpers import fd_snapshot, run_in_child
from hypothesis import given, settings
from hypothesis import strategies as st
from kcmp_rs import KcmpType, Order, baseline
from kcmp_rs._native import classify_fds_stats

Groups = list[tuple[int, ...]]
OrderName = Literal["fd", "kernel"]
ORDERS: list[OrderName] = ["fd", "kernel"]

HAVE_EVENTFD = hasattr(os, "eventfd")
NO_EVENTFD = "os.eventfd needs Python 3.10+"


# ---- building fd sets ----


KINDS = ["open", "opath", "pipe", "socketpair", "memfd", "dup", "dup", "dup2", "close"]
if HAVE_EVENTFD:
    KINDS.append("eventfd")

steps = st.lists(
    st.tuples(st.sampled_from(KINDS), st.integers(0, 10**6), st.integers(0, 10**6)),
    min_size=1,
    max_size=30,
)


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    return scratch_files(tmp_path_factory)


def not_open(fd: int) -> bool:
    try:
        os.fstat(fd)
    except OSError as e:
        return e.errno == errno.EBADF
    return False


def kernel_ascending(pid: int, groups: Groups) -> None:
    """Each group's first fd compares LESS than the next group's, asked both through
    the package and through the independent ctypes baseline."""
    for g, h in zip(groups, groups[1:]):
        assert kcmp_rs.kcmp(pid, pid, KcmpType.FILE, g[0], h[0]) is Order.LESS, (g, h)
        assert baseline.kcmp(pid, pid, KcmpType.FILE, g[-1], h[-1]) is Order.LESS, (g, h)


def check_against_brute_force(me: int, fds: list[int], query: list[int]) -> Groups:
    """classify_fds (both orders, stats variant, classify_files) == pairwise truth."""
    truth = baseline.partition_pairwise(me, fds)
    assert sorted(x for g in truth for x in g) == sorted(set(fds))

    assert kcmp_rs.classify_fds(me, query) == truth
    assert kcmp_rs.classify_fds(me, iter(query), missing="skip") == truth
    assert classify_fds_stats(me, query)[0] == truth

    by_kernel = kcmp_rs.classify_fds(me, query, order="kernel")
    assert sorted(by_kernel) == truth  # the same set partition...
    kernel_ascending(me, by_kernel)  # ...ascending in kcmp order
    assert classify_fds_stats(me, query, "kernel")[0] == by_kernel

    refs = kcmp_rs.classify_files([(me, fd) for fd in query])
    assert refs == [tuple((me, fd) for fd in g) for g in truth]
    return truth


# ---- differential ----


@settings(max_examples=300, deadline=None)
@given(steps=steps, data=st.data())
def test_matches_pairwise_partition(files: list[Path], steps: list[Any], data: Any) -> None:
    me = os.getpid()
    before = fd_snapshot()
    with FdSet(files) as s:
        for kind, a, b in steps:
            s.do(kind, a, b)
        fds = sorted(s.owned)
        # Any order, with repeats: they collapse.
        query = data.draw(st.permutations(fds + data.draw(st.lists(st.sampled_from(fds or [0])))))
        query = [fd for fd in query if fd in s.owned]
        truth = check_against_brute_force(me, fds, query)
        assert len(truth) <= len(fds)

        closed = sorted(fd for fd in s.closed if not_open(fd))
        if closed:
            # Not open: left out with skip, EBADF naming one of them with raise.
            mixed = query + closed
            assert kcmp_rs.classify_fds(me, mixed, missing="skip") == truth
            got = kcmp_rs.classify_fds(me, mixed, order="kernel", missing="skip")
            assert sorted(got) == truth
            with pytest.raises(OSError) as info:
                kcmp_rs.classify_fds(me, mixed)
            e: Any = info.value
            assert e.errno == errno.EBADF
            assert e.pid == me
            assert e.fd in closed
            assert f"fd {e.fd} is not open in process {me}" in str(e)
    assert fd_snapshot() == before


@pytest.mark.parametrize(
    "kind", ["open", "opath", "pipe", "socketpair", "memfd", "eventfd", "dup-of-opath"]
)
def test_each_kind_alone(files: list[Path], kind: str) -> None:
    """Each fd kind, several descriptions and dups of each: grouped like brute force."""
    if kind == "eventfd" and not HAVE_EVENTFD:
        pytest.skip(NO_EVENTFD)
    me = os.getpid()
    before = fd_snapshot()
    with FdSet(files) as s:
        base = "opath" if kind == "dup-of-opath" else kind
        for i in range(6):
            s.do(base, 2, 0)  # the same file each time: 6 descriptions of one inode
            s.do("dup", i * 7919, 0)
        s.do("dup2", 0, 5)
        fds = sorted(s.owned)
        truth = check_against_brute_force(me, fds, fds)
        assert 1 < len(truth) < len(fds)
    assert fd_snapshot() == before


@pytest.mark.skipif(not HAVE_EVENTFD, reason=NO_EVENTFD)
def test_eventfd_dups_group(files: list[Path]) -> None:
    me = os.getpid()
    with FdSet(files) as s:
        s.do("eventfd", 0, 0)
        s.do("eventfd", 0, 0)
        e1, e2 = sorted(s.owned)
        d1 = os.dup(e1)
        s.owned.add(d1)
        assert kcmp_rs.classify_fds(me, [e2, d1, e1]) == [(e1, d1), (e2,)]


def test_known_shapes(files: list[Path]) -> None:
    """A fixed example spelled out, so a failure reads without hypothesis."""
    me = os.getpid()
    with FdSet(files) as s:
        r, w = os.pipe()
        r2 = os.dup(r)
        f1 = os.open(files[0], os.O_RDONLY)
        f2 = os.open(files[0], os.O_RDONLY)
        f1b = os.dup(f1)
        s.owned.update({r, w, r2, f1, f2, f1b})
        expect = sorted([(r, r2), (w,), (f1, f1b), (f2,)])
        assert kcmp_rs.classify_fds(me, [f1b, f2, f1, w, r2, r, r]) == expect
        assert sorted(kcmp_rs.classify_fds(me, {r, w, r2, f1, f2, f1b}, order="kernel")) == expect
        assert kcmp_rs.classify_fds(me, []) == []
        assert kcmp_rs.classify_fds(me, [w]) == [(w,)]


def test_all_open_fds_default(files: list[Path]) -> None:
    """fds=None: every fd open in this process, and nothing else (no fd of ours)."""
    me = os.getpid()
    with FdSet(files) as s:
        for kind in ["pipe", "open", "dup", "opath", "memfd"]:
            s.do(kind, 0, 0)
        open_now = sorted(fd for fd, _ in fd_snapshot())
        assert kcmp_rs.open_fds(me) == open_now
        groups = kcmp_rs.classify_fds(me)
        assert sorted(x for g in groups for x in g) == open_now
        assert groups == baseline.partition_pairwise(me, open_now)
        by_kernel = kcmp_rs.classify_fds(me, order="kernel")
        assert sorted(by_kernel) == groups
        kernel_ascending(me, by_kernel)


# ---- call counts ----


# ---- the package's own fds ----


def lowest_free_fd() -> int:
    fd = os.dup(0)
    os.close(fd)
    return fd


def test_lowest_free_fd_is_never_reported() -> None:
    """The package opens fds during a call (e.g. /proc/PID/fd): the lowest free number,
    not open before the call, must not show up as one of the caller's."""
    me = os.getpid()
    n = lowest_free_fd()
    with pytest.raises(OSError) as info:
        kcmp_rs.classify_fds(me, [n])
    e: Any = info.value
    assert (e.errno, e.fd, e.pid) == (errno.EBADF, n, me)
    assert str(info.value) == f"[Errno 9] Bad file descriptor: fd {n} is not open in process {me}"
    assert kcmp_rs.classify_fds(me, [n], missing="skip") == []
    r, w = os.pipe()
    try:
        assert kcmp_rs.classify_fds(me, [w, n, r], missing="skip", order="kernel") in (
            [(r,), (w,)],
            [(w,), (r,)],
        )
    finally:
        os.close(r)
        os.close(w)
    got = kcmp_rs.classify_fds(me, range(n + 3), missing="skip")
    assert n not in {x for g in got for x in g}
    assert kcmp_rs.classify_files([(me, n)], missing="skip") == []
    assert n not in kcmp_rs.open_fds(me)
    assert n not in {x for g in kcmp_rs.classify_fds(me) for x in g}
    assert not_open(n)


def test_open_fds_is_exactly_the_open_set() -> None:
    me = os.getpid()
    r, w = os.pipe()
    try:
        expect = sorted(fd for fd, _ in fd_snapshot())
        got = kcmp_rs.open_fds(me)
        assert got == expect
        assert r in got and w in got
        assert lowest_free_fd() not in got
    finally:
        os.close(r)
        os.close(w)
    assert r not in kcmp_rs.open_fds(me)


@pytest.mark.usefixtures("fd_leak_check")
def test_no_fd_leak_over_many_calls(files: list[Path]) -> None:
    me = os.getpid()
    with FdSet(files) as s:
        for kind in ["pipe", "open", "open", "dup", "opath", "socketpair"]:
            s.do(kind, 0, 0)
        fds = sorted(s.owned)
        n = lowest_free_fd()
        for _ in range(100):
            kcmp_rs.classify_fds(me)
            kcmp_rs.classify_fds(me, fds, order="kernel")
            kcmp_rs.classify_fds(me, [*fds, n], missing="skip")
            kcmp_rs.classify_files([(me, fd) for fd in fds])
            kcmp_rs.open_fds(me)
            with pytest.raises(OSError):
                kcmp_rs.classify_fds(me, [*fds, n])
            with pytest.raises(ProcessLookupError):
                kcmp_rs.classify_fds(2**31 - 1, None)
            with pytest.raises(ValueError):
                kcmp_rs.classify_fds(me, [-1])
            with pytest.raises(OSError):
                classify_fds_stats(me, [n])
        assert lowest_free_fd() == n


# ---- huge inputs ----


def test_million_fds_skip() -> None:
    """10**6 fd numbers, nearly all not open: returns the open ones' grouping."""
    me = os.getpid()
    expect = kcmp_rs.classify_fds(me, kcmp_rs.open_fds(me))
    assert kcmp_rs.classify_fds(me, range(10**6), missing="skip") == expect
    assert kcmp_rs.classify_fds(me, list(range(10**6))[::-1], missing="skip") == expect
    got = kcmp_rs.classify_fds(me, range(10**6), missing="skip", order="kernel")
    assert sorted(got) == expect
    with pytest.raises(OSError) as info:
        kcmp_rs.classify_fds(me, range(10**6))
    assert info.value.errno == errno.EBADF


def test_max_fd_number() -> None:
    me = os.getpid()
    assert kcmp_rs.classify_fds(me, [2**31 - 1], missing="skip") == []
    with pytest.raises(OSError) as info:
        kcmp_rs.classify_fds(me, [2**31 - 1])
    assert getattr(info.value, "fd", None) == 2**31 - 1


# ---- bad arguments ----


class Boom(Exception):
    pass


def raising_midway(good: Iterable[Any], exc: BaseException) -> Iterator[Any]:
    yield from good
    raise exc


class IterRaises:
    def __init__(self, exc: BaseException) -> None:
        self.exc = exc

    def __iter__(self) -> Iterator[Any]:
        raise self.exc


class LenRaises:
    """Iterates fine, but its ``__len__`` raises."""

    def __init__(self, good: list[Any], exc: BaseException) -> None:
        self.good = good
        self.exc = exc

    def __len__(self) -> int:
        raise self.exc

    def __iter__(self) -> Iterator[Any]:
        return iter(self.good)


class LyingLen:
    """Iterates over ``items`` but claims to hold ``n`` of them (``__len__`` is a hint)."""

    def __init__(self, items: list[Any], n: int) -> None:
        self.items = items
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __iter__(self) -> Iterator[Any]:
        return iter(self.items)


VM = KcmpType.VM
ME = os.getpid()  # the process running the tests
API: dict[str, Any] = {
    "open_fds": kcmp_rs.open_fds,
    "classify_fds": kcmp_rs.classify_fds,
    "stats": classify_fds_stats,
    "classify_files": kcmp_rs.classify_files,
    "classify_tasks": kcmp_rs.classify_tasks,
}
PID = "pid must be a pid in 1..2147483647, got "
FD = "each fd in fds must be an fd in 0..2147483647, got "
REF_FD = "fd in refs must be an fd in 0..2147483647, got "
TASK_PID = "each pid in pids must be a pid in 1..2147483647, got "
FDS = "fds must be an iterable of ints, not "
REFS = "refs must be an iterable of (pid, fd) pairs, not "
REF = "each item of refs must be a (pid, fd) tuple, not "
PIDS = "pids must be an iterable of ints, not "
ORDER = 'order must be "fd" or "kernel", got '
MISSING = 'missing must be "raise" or "skip", got '
TYPE = "type must be a KcmpType or int, not "
ALLOW = "allow_pidfd_getfd must be a bool, not "
EPOLL = "type EPOLL_TFD compares against an epoll registration, not an index"

BAD: list[tuple[str, tuple[Any, ...], dict[str, Any], type[Exception], str]] = [
    ("open_fds", (True,), {}, TypeError, "pid must be an int, not bool"),
    ("open_fds", (1.0,), {}, TypeError, "pid must be an int, not float"),
    ("open_fds", ("1",), {}, TypeError, "pid must be an int, not str"),
    ("open_fds", (None,), {}, TypeError, "pid must be an int, not NoneType"),
    ("open_fds", ([ME],), {}, TypeError, "pid must be an int, not list"),
    ("open_fds", (0,), {}, ValueError, PID + "0"),
    ("open_fds", (-1,), {}, ValueError, PID + "-1"),
    ("open_fds", (2**31,), {}, ValueError, PID + "2147483648"),
    ("open_fds", (2**32 + ME,), {}, ValueError, PID + str(2**32 + ME)),
    ("open_fds", (2**64,), {}, ValueError, PID + "18446744073709551616"),
    ("classify_fds", (True,), {}, TypeError, "pid must be an int, not bool"),
    ("classify_fds", (float(ME),), {}, TypeError, "pid must be an int, not float"),
    ("classify_fds", (None,), {}, TypeError, "pid must be an int, not NoneType"),
    ("classify_fds", (-ME,), {}, ValueError, PID + str(-ME)),
    ("classify_fds", (2**32 + ME, [0]), {}, ValueError, PID + str(2**32 + ME)),
    ("classify_fds", (ME, 3), {}, TypeError, FDS + "int"),
    ("classify_fds", (ME, 3.5), {}, TypeError, FDS + "float"),
    ("classify_fds", (ME, "012"), {}, TypeError, FDS + "str"),
    ("classify_fds", (ME, b"\x00"), {}, TypeError, FDS + "bytes"),
    ("classify_fds", (ME, [0, True]), {}, TypeError, "each fd in fds must be an int, not bool"),
    ("classify_fds", (ME, [0, 1.0]), {}, TypeError, "each fd in fds must be an int, not float"),
    ("classify_fds", (ME, [None]), {}, TypeError, "each fd in fds must be an int, not NoneType"),
    ("classify_fds", (ME, ["0"]), {}, TypeError, "each fd in fds must be an int, not str"),
    ("classify_fds", (ME, [(0,)]), {}, TypeError, "each fd in fds must be an int, not tuple"),
    ("classify_fds", (ME, [0, -1]), {}, ValueError, FD + "-1"),
    ("classify_fds", (ME, [2**31]), {}, ValueError, FD + "2147483648"),
    ("classify_fds", (ME, [2**32 + 3]), {}, ValueError, FD + "4294967299"),
    ("classify_fds", (ME, [2**64 + 3]), {}, ValueError, FD + str(2**64 + 3)),
    ("classify_fds", (ME, [-(2**63) - 1]), {}, ValueError, FD + str(-(2**63) - 1)),
    ("classify_fds", (ME, [0]), {"order": "x"}, ValueError, ORDER),
    ("classify_fds", (ME, [0]), {"order": "FD"}, ValueError, ORDER),
    ("classify_fds", (ME, [0]), {"order": ""}, ValueError, ORDER),
    ("classify_fds", (ME, [0]), {"missing": "ignore"}, ValueError, MISSING),
    ("classify_fds", (ME, [0]), {"order": 1}, TypeError, "order must be a str, not int"),
    ("classify_fds", (ME, [0]), {"order": None}, TypeError, "order must be a str, not NoneType"),
    (
        "classify_fds",
        (ME, [0]),
        {"missing": None},
        TypeError,
        "missing must be a str, not NoneType",
    ),
    (
        "classify_fds",
        (ME, [0]),
        {"missing": b"skip"},
        TypeError,
        "missing must be a str, not bytes",
    ),
    ("classify_fds", (ME, [0]), {"allow_pidfd_getfd": "yes"}, TypeError, ALLOW + "str"),
    ("classify_fds", (ME, [0]), {"allow_pidfd_getfd": 1}, TypeError, ALLOW + "int"),
    ("classify_fds", (ME, [0]), {"allow_pidfd_getfd": None}, TypeError, ALLOW + "NoneType"),
    ("classify_fds", (ME, [0]), {"bogus": 1}, TypeError, "bogus"),
    ("classify_fds", (ME, [0], "kernel"), {}, TypeError, ""),
    ("stats", (ME, [0], "x"), {}, ValueError, ORDER),
    ("stats", (ME, None), {}, TypeError, FDS + "NoneType"),
    ("stats", (ME, [-1]), {}, ValueError, FD + "-1"),
    ("stats", (ME, [0], 1), {}, TypeError, "order must be a str, not int"),
    ("stats", (ME, [0], None), {}, TypeError, "order must be a str, not NoneType"),
    ("classify_files", (5,), {}, TypeError, REFS + "int"),
    ("classify_files", (None,), {}, TypeError, REFS + "NoneType"),
    ("classify_files", ("ab",), {}, TypeError, REFS + "str"),
    ("classify_files", ({(ME, 0): 1}.values(),), {}, TypeError, REF + "int"),
    ("classify_files", ([[ME, 0]],), {}, TypeError, REF + "list"),
    ("classify_files", ([ME],), {}, TypeError, REF + "int"),
    ("classify_files", ([(ME,)],), {}, TypeError, REF + "a tuple of 1 item"),
    ("classify_files", ([(ME, 0, 1)],), {}, TypeError, REF + "a tuple of 3 items"),
    ("classify_files", ([None],), {}, TypeError, REF + "NoneType"),
    ("classify_files", ([(True, 0)],), {}, TypeError, "pid in refs must be an int, not bool"),
    ("classify_files", ([(ME, False)],), {}, TypeError, "fd in refs must be an int, not bool"),
    ("classify_files", ([(ME, 0.0)],), {}, TypeError, "fd in refs must be an int, not float"),
    ("classify_files", ([(str(ME), 0)],), {}, TypeError, "pid in refs must be an int, not str"),
    (
        "classify_files",
        ([(0, 0)],),
        {},
        ValueError,
        "pid in refs must be a pid in 1..2147483647, got 0",
    ),
    ("classify_files", ([(ME, 0), (ME, -1)],), {}, ValueError, REF_FD + "-1"),
    ("classify_files", ([(ME, 2**31)],), {}, ValueError, REF_FD + "2147483648"),
    ("classify_files", ([(ME, 2**32 + 3)],), {}, ValueError, REF_FD + "4294967299"),
    ("classify_files", ([(ME, 0)],), {"missing": "no"}, ValueError, MISSING),
    (
        "classify_files",
        ([(ME, 0)],),
        {"missing": b"skip"},
        TypeError,
        "missing must be a str, not bytes",
    ),
    ("classify_files", ([(ME, 0)],), {"allow_pidfd_getfd": 1}, TypeError, ALLOW + "int"),
    ("classify_files", ([(ME, 0)],), {"order": "fd"}, TypeError, "order"),
    ("classify_tasks", (ME, VM), {}, TypeError, PIDS + "int"),
    ("classify_tasks", ("12", VM), {}, TypeError, PIDS + "str"),
    ("classify_tasks", (None, VM), {}, TypeError, PIDS + "NoneType"),
    (
        "classify_tasks",
        ([ME, True], VM),
        {},
        TypeError,
        "each pid in pids must be an int, not bool",
    ),
    ("classify_tasks", ([1.5], VM), {}, TypeError, "each pid in pids must be an int, not float"),
    ("classify_tasks", ([0], VM), {}, ValueError, TASK_PID + "0"),
    ("classify_tasks", ([-1], VM), {}, ValueError, TASK_PID + "-1"),
    ("classify_tasks", ([2**32 + ME], VM), {}, ValueError, TASK_PID + str(2**32 + ME)),
    ("classify_tasks", ([ME], KcmpType.FILE), {}, ValueError, "type FILE compares fds, not tasks"),
    ("classify_tasks", ([ME], 0), {}, ValueError, "type FILE compares fds, not tasks"),
    ("classify_tasks", ([ME], KcmpType.EPOLL_TFD), {}, ValueError, EPOLL),
    ("classify_tasks", ([ME], 7), {}, ValueError, EPOLL),
    ("classify_tasks", ([ME], 8), {}, ValueError, "type must be a KcmpType (0..7), got 8"),
    ("classify_tasks", ([ME], -1), {}, ValueError, "type must be a KcmpType (0..7), got -1"),
    ("classify_tasks", ([ME], 2**64), {}, ValueError, "type must be a KcmpType (0..7), got "),
    ("classify_tasks", ([ME], True), {}, TypeError, TYPE + "bool"),
    ("classify_tasks", ([ME], "VM"), {}, TypeError, TYPE + "str"),
    ("classify_tasks", ([ME], 1.0), {}, TypeError, TYPE + "float"),
    ("classify_tasks", ([ME], None), {}, TypeError, TYPE + "NoneType"),
    ("classify_tasks", ([ME], VM), {"missing": "x"}, ValueError, MISSING),
    ("classify_tasks", ([ME], VM), {"missing": 0}, TypeError, "missing must be a str, not int"),
    ("classify_tasks", ([ME],), {}, TypeError, "type"),
]


@pytest.mark.parametrize(
    ("name", "args", "kwargs", "exc", "message"),
    BAD,
    ids=[f"{b[0]}-{i}" for i, b in enumerate(BAD)],
)
def test_bad_arguments(
    name: str, args: tuple[Any, ...], kwargs: dict[str, Any], exc: type[Exception], message: str
) -> None:
    """The exact exception class, and the message naming the argument and the value."""
    with pytest.raises(exc) as info:
        API[name](*args, **kwargs)
    assert type(info.value) is exc
    if message.endswith((" got ", " not ")) or message in ("", "bogus", "order", "type"):
        assert message in str(info.value)
    else:
        assert str(info.value) == message or str(info.value).startswith(message + ":")


@pytest.mark.parametrize("value", ["x", 'a"b', "it's", "\u00e9", ""])
def test_bad_choice_value_shown_as_python_repr(value: str) -> None:
    for name, start in [("order", ORDER), ("missing", MISSING)]:
        with pytest.raises(ValueError) as info:
            API["classify_fds"](ME, [0], **{name: value})
        assert str(info.value) == start + repr(value)


def test_bad_choice_names_the_value() -> None:
    for kwargs, start in [({"order": "xyz"}, ORDER), ({"missing": "xyz"}, MISSING)]:
        with pytest.raises(ValueError) as info:
            API["classify_fds"](ME, [0], **kwargs)
        assert re.fullmatch(re.escape(start) + r"['\"]xyz['\"]", str(info.value))


def _fds_call(it: Any) -> object:
    return kcmp_rs.classify_fds(ME, it)


def _stats_call(it: Any) -> object:
    return classify_fds_stats(ME, it)


def _files_call(it: Any) -> object:
    return kcmp_rs.classify_files(it)


def _tasks_call(it: Any) -> object:
    return kcmp_rs.classify_tasks(it, VM)


@pytest.mark.parametrize(
    ("call", "good"),
    [
        (_fds_call, [0, 1, 2]),
        (_stats_call, [0, 1, 2]),
        (_files_call, [(ME, 0), (ME, 1)]),
        (_tasks_call, [ME, ME]),
    ],
    ids=["classify_fds", "classify_fds_stats", "classify_files", "classify_tasks"],
)
@pytest.mark.parametrize(
    "where",
    [
        "midway",
        "in-iter",
    ],
)
def test_iterable_exception_propagates_unchanged(
    call: Callable[[Any], object], good: list[Any], where: str
) -> None:
    for exc in [Boom("boom"), KeyError(3), OSError(errno.EIO, "eio"), KeyboardInterrupt()]:
        it: Iterable[Any]
        it = raising_midway(good, exc) if where == "midway" else IterRaises(exc)
        with pytest.raises(type(exc)) as info:
            call(it)
        assert info.value is exc


def test_len_is_never_consulted() -> None:
    """Only lists' and tuples' lengths preallocate; another __len__ is never called."""
    r, w = os.pipe()
    try:
        d = os.dup(r)
        try:
            got = kcmp_rs.classify_fds(ME, LenRaises([w, d, r], KeyboardInterrupt()))
            assert got == [(r, d), (w,)]
        finally:
            os.close(d)
    finally:
        os.close(r)
        os.close(w)


def test_int_subclasses_accepted() -> None:
    """IntEnum members are ints: accepted as fds and pids (bool alone is refused)."""
    r, w = os.pipe()
    try:
        Fds = enum.IntEnum("Fds", {"R": r, "W": w})
        assert kcmp_rs.classify_fds(ME, list(Fds)) == [(r,), (w,)]
        assert kcmp_rs.classify_tasks([ME], 1) == [(ME,)]
    finally:
        os.close(r)
        os.close(w)


def _classify_lying_len(n: int) -> tuple[list[Any], list[Any], list[Any], list[Any]]:
    r, w = os.pipe()
    me = os.getpid()
    return (
        kcmp_rs.classify_fds(me, LyingLen([w, r], n)),
        classify_fds_stats(me, LyingLen([r, w], n))[0],
        kcmp_rs.classify_files(LyingLen([(me, w), (me, r)], n)),
        kcmp_rs.classify_tasks(LyingLen([me], n), VM),
    )


@pytest.mark.parametrize(
    "n",
    [
        0,
        1,
        10**6,
        2**46,
        2**62,
    ],
)
def test_len_is_only_a_hint(n: int) -> None:
    """An iterable whose __len__ is wrong (it is only a hint) classifies what it yields;
    run in a child, since a wrong preallocation can abort the process."""
    result = run_in_child(_classify_lying_len, n)
    assert result.status == 0, result.error.traceback if result.error else result.status
    fds_groups, stats_groups, files_groups, tasks_groups = result.unwrap()
    pid = result.pid
    assert fds_groups == stats_groups
    assert len(fds_groups) == 2 and sorted(g[0] for g in fds_groups) == [g[0] for g in fds_groups]
    assert [tuple((pid, fd) for fd in g) for g in fds_groups] == files_groups
    assert tasks_groups == [(pid,)]
