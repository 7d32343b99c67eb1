"""A child SIGKILLed at a spread of times during classify_fds, classify_files,
classify_tasks and scan, in both ``missing`` modes: every outcome is the exact answer
(computed before the kill) or the documented ProcessLookupError, never a partial answer.
The counts of each outcome are printed (``pytest -s``) and are part of every assertion
message. (Count-driven injection, a kill after exactly k oracle calls, is the Rust
test ``oracle::deaths``.)"""

from __future__ import annotations

import os
import signal
import statistics
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any, Literal

import kcmp_rs
import pytest
from _checks import needs_kcmp
from _helpers import ChildProcess, canonical, spawned
from kcmp_rs import KcmpType

pytestmark = [needs_kcmp, pytest.mark.slow]

ROUNDS = 80
Missing = Literal["raise", "skip"]
COPIES = 3000


def _exited(pid: int) -> str:
    return (
        f"[Errno 3] No such process: process {pid} exited during the call "
        "(its pid may now name another process)"
    )


def _zombie(pid: int) -> str:
    return (
        f"[Errno 3] No such process: process {pid} has exited and awaits reaping "
        "(a zombie): it has no resources left to compare"
    )


def _holding(r: int, copies: int) -> Callable[[], None]:
    def setup() -> None:
        for _ in range(copies):
            os.dup(r)

    return setup


def _kill_after(pid: int, delay: float) -> threading.Thread:
    stop = threading.Event()

    def kill() -> None:
        stop.wait(delay)  # the injection point itself, not a wait for a condition
        os.kill(pid, signal.SIGKILL)

    t = threading.Thread(target=kill)
    t.start()
    return t


def _judge(
    got: object, truth: object, without: object | None, pid: int, counts: Counter[str]
) -> None:
    """Counts one outcome; fails on anything but the exact answer (or, under skip,
    the exact answer without the dead child) or the documented errors."""
    if isinstance(got, ProcessLookupError):
        text = str(got)
        kind = "exited" if text == _exited(pid) else "zombie" if text == _zombie(pid) else None
        assert kind is not None, (text, dict(counts))
        assert getattr(got, "pid", None) == pid, (got, dict(counts))
        counts[kind] += 1
    elif got == truth:
        counts["exact"] += 1
    elif without is not None and got == without:
        counts["exact without the child"] += 1
    else:
        pytest.fail(f"neither exact nor a documented error: {got!r}; so far {dict(counts)}")


def _call(fn: Callable[[], object]) -> object:
    try:
        return fn()
    except ProcessLookupError as e:
        return e


def _rounds(
    name: str,
    pipe: tuple[int, int],
    batch: Callable[[ChildProcess], tuple[Callable[[], object], object, object | None]],
    rounds: int = ROUNDS,
) -> Counter[str]:
    """Per round: a fresh child holding ``COPIES`` fds, the truth, then the same call
    with the child killed after a delay spread over the call's duration."""
    counts: Counter[str] = Counter()
    spans: list[float] = []
    for i in range(rounds):
        with spawned(_holding(pipe[0], COPIES), expect_exit=None) as child:
            call, truth, without = batch(child)
            t0 = time.perf_counter()
            assert call() == truth
            spans.append(time.perf_counter() - t0)
            # The median, not the maximum: one call slowed by other work on the machine
            # would push every later kill past the end of the call.
            span = statistics.median(spans)
            killer = _kill_after(child.pid, span * 1.2 * i / rounds)
            got = _call(call)
            killer.join()
            _judge(got, truth, without, child.pid, counts)
    print(f"\n{name}: {rounds} rounds, {dict(counts)}")
    return counts


def _assert_spread(counts: Counter[str], rounds: int = ROUNDS) -> None:
    assert sum(counts.values()) == rounds, dict(counts)
    died = rounds - counts["exact"]
    assert died > rounds // 4, f"too few kills landed during the call: {dict(counts)}"


@pytest.mark.parametrize("missing", ["raise", "skip"])
def test_classify_fds_of_a_dying_child(missing: Missing, pipe: tuple[int, int]) -> None:
    def batch(child: ChildProcess) -> tuple[Callable[[], object], object, None]:
        def call() -> object:
            return kcmp_rs.classify_fds(child.pid, missing=missing)

        return call, call(), None

    counts = _rounds(f"classify_fds {missing}", pipe, batch)
    assert counts["exact without the child"] == 0, dict(counts)
    _assert_spread(counts)


@pytest.mark.parametrize("missing", ["raise", "skip"])
def test_classify_files_with_a_dying_child(missing: Missing, pipe: tuple[int, int]) -> None:
    me = os.getpid()

    def batch(child: ChildProcess) -> tuple[Callable[[], object], object, object | None]:
        refs = [(child.pid, fd) for fd in kcmp_rs.open_fds(child.pid)] + [(me, fd) for fd in pipe]

        def call() -> object:
            return kcmp_rs.classify_files(refs, missing=missing)

        truth = call()
        assert isinstance(truth, list)
        kept = [tuple(r for r in g if r[0] != child.pid) for g in truth]
        return call, truth, ([g for g in kept if g] if missing == "skip" else None)

    counts = _rounds(f"classify_files {missing}", pipe, batch)
    _assert_spread(counts)


@pytest.mark.parametrize("missing", ["raise", "skip"])
def test_classify_tasks_with_a_dying_child(missing: Missing, pipe: tuple[int, int]) -> None:
    me = os.getpid()
    with spawned() as bystander:

        def batch(child: ChildProcess) -> tuple[Callable[[], object], object, object | None]:
            pids = [me, child.pid, bystander.pid]

            def call() -> object:
                return kcmp_rs.classify_tasks(pids, KcmpType.VM, missing=missing)

            truth = call()
            assert isinstance(truth, list)
            kept = [tuple(p for p in g if p != child.pid) for g in truth]
            return call, truth, ([g for g in kept if g] if missing == "skip" else None)

        counts = _rounds(f"classify_tasks {missing}", pipe, batch)
    assert sum(counts.values()) == ROUNDS, dict(counts)


def _scan_groups(found: Any) -> list[tuple[Any, ...]]:
    return canonical(tuple((m.pid, m.fd) for m in d.members) for d in found.descriptions)


def test_scan_with_a_dying_child(pipe: tuple[int, int]) -> None:
    """The scan never fails for a death: the child is either read whole or skipped
    ("exited" or "zombie"), and the descriptions of the others stay exact."""
    with spawned(_holding(pipe[0], 8)) as bystander:

        def batch(child: ChildProcess) -> tuple[Callable[[], object], object, object]:
            pids = [child.pid, bystander.pid]

            def call() -> object:
                found = kcmp_rs.scan(pids)
                gone = {s.pid: s.reason for s in found.skipped}
                if gone:
                    assert gone == {child.pid: gone[child.pid]}, gone
                    assert gone[child.pid] in ("exited", "zombie"), gone
                return _scan_groups(found)

            truth = call()
            assert isinstance(truth, list)
            kept = [tuple(r for r in g if r[0] != child.pid) for g in truth]
            # A description the bystander alone holds is not shared, so not reported.
            return call, truth, [g for g in kept if len(g) > 1]

        counts = _rounds("scan", pipe, batch, rounds=30)
    assert sum(counts.values()) == 30, dict(counts)
    assert counts["exited"] + counts["zombie"] == 0, dict(counts)
