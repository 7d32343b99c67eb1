"""The census for metrics, ``_native.census``: one pass over processes the tests start,
each keeping only the fds its setup names (0-2 on /dev/null), so that every count is
known exactly: shared pipes (checked against ``scan()`` too), one-sided pipes and
FIFOs, crossings of a network and a mount namespace, epoll registrations open, closed
and reused, the rows per process, skipped processes and the argument errors."""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import select
import signal
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import kcmp_rs
import pytest
from _helpers import fork, keep_only, libc, new_cgroup, run_in_child, thread_forever
from _scan_helpers import missing_pid
from kcmp_rs import _native
from kcmp_rs._native import CensusReport

CLONE_NEWNS = 0x00020000
CLONE_NEWNET = 0x40000000
_PR_SET_PDEATHSIG = 1
COMMAND = "kc-census"
KINDS = ["pid", "mnt", "net", "user", "ipc", "uts", "cgroup"]
NO_UNPAIRED = [("pipe", "reader", 0), ("pipe", "writer", 0), ("fifo", "reader", 0),
               ("fifo", "writer", 0)]  # fmt: skip
NO_EPOLL = [("open", 0), ("closed", 0), ("reused", 0)]

#: Objects a child's setup must keep alive (an epoll object closes its fd when freed).
_kept: list[object] = []


@dataclass
class Held:
    """A child the test started: its pid and the fds its setup reported by name."""

    pid: int
    fds: dict[str, int]


def _child(flags: int, setup: Callable[[], dict[str, int]], report_w: int) -> None:
    """The forked child: unshare, set up, keep only its fds, report, wait for SIGKILL."""
    code = 1
    try:
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if flags and libc.unshare(flags) != 0:
            raise OSError(ctypes.get_errno(), "unshare failed")
        fds = setup()
        keep_only({report_w, *fds.values()})
        with open("/proc/self/comm", "w") as f:
            f.write(COMMAND)
        os.write(report_w, json.dumps(fds).encode())
        os.close(report_w)
        while True:
            signal.pause()
    except BaseException:
        code = 2
    os._exit(code)


@contextlib.contextmanager
def held(setup: Callable[[], dict[str, int]] = dict, flags: int = 0) -> Iterator[Held]:
    """A child running ``setup`` (in new namespaces: ``flags``), killed and reaped after."""
    report_r, report_w = os.pipe()
    pid = fork()
    if pid == 0:  # pragma: no cover - the child never returns
        os.close(report_r)
        _child(flags, setup, report_w)
    os.close(report_w)
    try:
        with os.fdopen(report_r, "rb") as f:
            raw = f.read()
        assert raw, f"child {pid} failed before reporting"
        yield Held(pid, json.loads(raw))
    finally:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)


def _keeping(**fds: int) -> Callable[[], dict[str, int]]:
    return lambda: dict(fds)


def _by_type(report: CensusReport) -> dict[str, int]:
    """The fds counted per type, whatever container the tests run in."""
    totals: dict[str, int] = {}
    for _, _, kind, n in report.fds:
        totals[kind] = totals.get(kind, 0) + n
    return totals


def _zeros(report: CensusReport) -> None:
    assert report.crossings == [(k, 0) for k in KINDS]
    assert report.crossings_undecided == [(k, 0) for k in KINDS]


# ---- shared descriptions and the rows per process ----


def test_a_pipe_held_by_three_processes_is_shared_as_the_scan_sees_it() -> None:
    r, w = os.pipe()
    with contextlib.ExitStack() as stack:
        try:
            kids = [stack.enter_context(held(_keeping(r=r, w=w))) for _ in range(3)]
        finally:
            os.close(r)
            os.close(w)
        pids = sorted(k.pid for k in kids)
        found = _native.census(pids, per_process=True)
        scanned = kcmp_rs.scan(pids)
    by_scan = sum(
        1 for d in scanned.descriptions if d.type == "FIFO" and len({m.pid for m in d.members}) > 1
    )
    assert dict(found.shared) == {"FIFO": 2} == {"FIFO": by_scan}
    assert found.processes_read == 3
    assert found.skipped == [] and found.undecided == 0
    assert _by_type(found) == {"FIFO": 6, "CHR": 9}  # r, w and 0-2 in each
    assert sum(n for *_, n in found.fds) == scanned.fds_classified
    assert found.per_process == [(pid, COMMAND.encode(), 5, 2) for pid in pids]
    assert found.unpaired == NO_UNPAIRED  # both ends held
    assert found.epoll == NO_EPOLL and found.epoll_unread == []
    _zeros(found)
    calls = dict(found.syscalls)
    assert list(calls) == ["engine_key", "engine_same", "engine_compare", "kcmp_epoll_tfd"]
    assert calls["engine_key"] >= 15 and calls["kcmp_epoll_tfd"] == 0


def test_rows_per_process_only_when_asked() -> None:
    with held() as child:
        assert _native.census([child.pid]).per_process is None
        assert _native.census([child.pid], per_process=False).per_process is None
        rows = _native.census([child.pid], per_process=True).per_process
    assert rows == [(child.pid, COMMAND.encode(), 3, 0)]


def _start_thread() -> dict[str, int]:
    r, w = os.pipe()
    return {"r": r, "w": w, "tid": thread_forever()}


def test_fd_table_sharers_are_read_once_under_the_pid_read() -> None:
    with held(_start_thread) as child:
        tid = child.fds.pop("tid")
        found = _native.census([child.pid, tid], per_process=True)
    reader = min(child.pid, tid)
    assert found.processes_read == 2
    assert _by_type(found) == {"FIFO": 2, "CHR": 3}  # counted once, not per thread
    # Every description is held by two tasks of one table: shared, as the scan's
    # boundaries count holders.
    assert dict(found.shared) == {"FIFO": 2, "CHR": 1}
    assert found.per_process == [(reader, COMMAND.encode(), 5, 5)]
    _zeros(found)


# ---- one-sided pipes and FIFOs ----


def _open_fifos(tmp: Path) -> Callable[[], dict[str, int]]:
    def setup() -> dict[str, int]:
        # Opened O_RDWR: one description on both sides, never one-sided.
        both = os.open(tmp / "both", os.O_RDWR)
        reader = os.open(tmp / "read-only", os.O_RDONLY | os.O_NONBLOCK)
        return {"both": both, "reader": reader}

    return setup


def test_ends_held_on_one_side_only_are_unpaired(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "both")
    os.mkfifo(tmp_path / "read-only")
    r, w = os.pipe()
    os.close(r)  # the read end closed everywhere before any child exists
    with contextlib.ExitStack() as stack:
        try:
            kids = [stack.enter_context(held(_keeping(w=w))) for _ in range(2)]
        finally:
            os.close(w)
        kids.append(stack.enter_context(held(_open_fifos(tmp_path))))
        found = _native.census([k.pid for k in kids])
    assert found.unpaired == [
        ("pipe", "reader", 1),
        ("pipe", "writer", 0),
        ("fifo", "reader", 0),
        ("fifo", "writer", 1),
    ]
    assert dict(found.shared) == {"FIFO": 1}


# ---- boundaries crossed ----


def test_descriptions_held_across_a_network_and_a_mount_namespace_cross_them() -> None:
    r, w = os.pipe()
    with contextlib.ExitStack() as stack:
        try:
            plain = stack.enter_context(held(_keeping(r=r, w=w)))
            netns = stack.enter_context(held(_keeping(r=r, w=w), CLONE_NEWNET))
            mntns = stack.enter_context(held(_keeping(r=r), CLONE_NEWNS))
        finally:
            os.close(r)
            os.close(w)
        pids = [plain.pid, netns.pid, mntns.pid]
        found = _native.census(pids)
        by_net = kcmp_rs.scan(pids, boundary="net")
    # r: held in both network and both mount namespaces; w: in both network ones.
    expected = {k: 0 for k in KINDS} | {"net": 2, "mnt": 1}
    assert found.crossings == list(expected.items())
    assert found.crossings_undecided == [(k, 0) for k in KINDS]
    assert dict(found.crossings)["net"] == sum(len(d.boundaries) > 1 for d in by_net.descriptions)
    assert dict(found.shared) == {"FIFO": 2}


def test_fds_are_counted_by_the_container_their_cgroup_names() -> None:
    container = os.urandom(32).hex()  # a podman container's id, unique to this run
    r, w = os.pipe()
    # The children go before the group: it is removed once empty.
    with new_cgroup(f"libpod-{container}.scope") as (directory, _), contextlib.ExitStack() as stack:
        try:
            outside = stack.enter_context(held(_keeping(r=r, w=w)))
            inside = stack.enter_context(held(_keeping(r=r)))
        finally:
            os.close(r)
            os.close(w)
        with open(os.path.join(directory, "cgroup.procs"), "w") as f:
            f.write(str(inside.pid))
        found = _native.census([outside.pid, inside.pid])
    boxed = {
        (kind, n) for runtime, cid, kind, n in found.fds if (runtime, cid) == ("podman", container)
    }
    assert boxed == {("FIFO", 1), ("CHR", 3)}
    assert dict(found.crossings)["cgroup"] == 1  # r, held in both groups
    assert dict(found.crossings_undecided)["cgroup"] == 0


# ---- epoll sets ----


def _epoll_set() -> dict[str, int]:
    ep = select.epoll()
    _kept.append(ep)
    open_r, open_w = os.pipe()
    ep.register(open_r, select.EPOLLIN)
    closed_r, closed_w = os.pipe()
    closed_copy = os.dup(closed_r)
    ep.register(closed_r, select.EPOLLIN)
    reused_r, reused_w = os.pipe()
    reused_copy = os.dup(reused_r)
    ep.register(reused_r, select.EPOLLIN)
    # Reused: the number now names another file.
    os.dup2(open_w, reused_r)
    # Closed: the number closed last (no later fd takes it), the file kept alive by a
    # copy (else the kernel drops the registration).
    os.close(closed_r)
    return {
        "ep": ep.fileno(),
        "open_r": open_r,
        "open_w": open_w,
        "closed_w": closed_w,
        "closed_copy": closed_copy,
        "reused_w": reused_w,
        "reused_copy": reused_copy,
        "reused_r": reused_r,
    }


def test_epoll_registrations_are_counted_open_closed_and_reused() -> None:
    with held(_epoll_set) as child, held() as bystander:
        found = _native.census([child.pid, bystander.pid])
    assert found.epoll == [("open", 1), ("closed", 1), ("reused", 1)]
    assert found.epoll_unread == []
    assert _by_type(found)["eventpoll"] == 1
    assert dict(found.syscalls)["kcmp_epoll_tfd"] >= 3


def _census_without_kcmp(pid: int) -> list[tuple[int, str]]:
    _native.disable_kcmp()
    return _native.census([pid]).epoll_unread


def test_epoll_sets_unread_without_kcmp_are_said_never_dropped() -> None:
    with held(_epoll_set) as child:
        unread = run_in_child(_census_without_kcmp, child.pid).unwrap()
    assert len(unread) == 1
    pid, reason = unread[0]
    assert pid == child.pid
    assert reason.startswith("error: ") and "kcmp" in reason, reason


# ---- processes not read ----


def test_a_pid_that_does_not_exist_is_skipped_and_nothing_counted() -> None:
    gone = missing_pid()
    found = _native.census([gone, gone], per_process=True)
    assert found.skipped == [(gone, "no such process")]
    assert found.processes_read == 0 and found.undecided == 0
    assert found.fds == [] and found.shared == [] and found.per_process == []
    assert found.unpaired == NO_UNPAIRED and found.epoll == NO_EPOLL
    _zeros(found)


def test_an_empty_census_has_every_fixed_row() -> None:
    found = _native.census([])
    assert found.skipped == [] and found.epoll_unread == []
    assert found.unpaired == NO_UNPAIRED and found.epoll == NO_EPOLL
    _zeros(found)


# ---- arguments ----

BAD_PIDS: list[tuple[Any, type[Exception], str]] = [
    (5, TypeError, "pids must be an iterable of ints, not int"),
    ("12", TypeError, "pids must be an iterable of ints, not str"),
    (None, TypeError, "pids must be an iterable of ints, not NoneType"),
    ([0], ValueError, "each pid in pids must be a pid in 1..2147483647, got 0"),
    ([2**31], ValueError, "each pid in pids must be a pid in 1..2147483647, got 2147483648"),
    ([1.5], TypeError, "each pid in pids must be an int, not float"),
    ([True], TypeError, "each pid in pids must be an int, not bool"),
]


@pytest.mark.parametrize(("pids", "cls", "message"), BAD_PIDS)
def test_bad_pids_are_refused_as_scan_refuses_them(
    pids: Any, cls: type[Exception], message: str
) -> None:
    with pytest.raises(cls) as census_error:
        _native.census(pids)
    assert str(census_error.value) == message
    with pytest.raises(cls) as scan_error:
        _native.scan(pids, True, False, None, None)
    assert str(scan_error.value) == message


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (1, "per_process must be a bool, not int"),
        (None, "per_process must be a bool, not NoneType"),
        ("yes", "per_process must be a bool, not str"),
    ],
)
def test_per_process_must_be_a_bool(value: Any, message: str) -> None:
    with pytest.raises(TypeError) as error:
        _native.census([], per_process=value)
    assert str(error.value) == message


def test_an_iterable_s_own_error_propagates_as_raised() -> None:
    def pids() -> Iterator[int]:
        yield os.getpid()
        raise KeyError("boom")

    with pytest.raises(KeyError, match="boom"):
        _native.census(pids())


def test_an_unknown_argument_is_refused() -> None:
    with pytest.raises(TypeError, match="unexpected keyword argument 'boundary'"):
        _native.census([], boundary="net")  # type: ignore[call-arg]


# ---- Ctrl-C ----


def _interrupted_census(pid: int) -> tuple[str, int]:
    """Ctrl-C arriving as the pass starts: SIGINT's flag set by ``interrupt_main`` and
    the census called next from C (``map``), no bytecode between where the flag could
    be acted on, so the pass's own check raises it. Then a census runs as usual."""
    import _thread
    import functools
    import operator

    after: list[bool] = []
    # A step after the census, also from C: reached only if the census itself did not
    # raise (the flag would then be acted on once map returns, too late for it).
    steps = [
        _thread.interrupt_main,
        functools.partial(_native.census, [pid]),
        functools.partial(after.append, True),
    ]
    try:
        list(map(operator.methodcaller("__call__"), steps))
    except KeyboardInterrupt:
        outcome = "KeyboardInterrupt" if not after else "raised after the census"
    else:
        outcome = "finished"
    return outcome, _native.census([pid]).processes_read


def test_ctrl_c_raises_keyboard_interrupt_and_the_next_census_runs() -> None:
    with held() as child:
        assert run_in_child(_interrupted_census, child.pid).unwrap() == ("KeyboardInterrupt", 1)
