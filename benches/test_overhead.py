"""Figure 3: native classify time vs the time its own syscalls take (the floor).

The bench binary ``benches/syscall_floor.rs`` (``_benchlib.floor_session`` runs it)
runs the real classification once through a recording oracle, then replays exactly the
recorded syscalls (fstat / fstatat, kcmp, F_DUPFD_QUERY) in a loop with no engine logic,
and also times the full engine in Rust (no Python conversions). So

    python call = floor + engine/oracle logic + binding (argument and result conversion)

Target (calling process, n = 10,000): the Python call within 1.15x of the floor. For
``self`` the fds are passed down to the binary at the same numbers and classified
there as its own, with the syscalls a classification in this process makes.

``make bench`` builds the binary (the shipped wheel and ``make build`` do not). Without
it this benchmark fails, saying how to build it, rather than report a figure it cannot
measure.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from typing import Any

import kcmp_rs
import pytest
from _benchlib import (
    RESULTS,
    SCENARIOS,
    FileSet,
    fd_set,
    floor_binary,
    floor_session,
    fmt_time,
    interleaved,
    ratio,
)

N = 10_000
TARGET = 1.15


@pytest.mark.parametrize("where", ["self", "child"])
@pytest.mark.parametrize("scenario", SCENARIOS)
def test_overhead(
    request: pytest.FixtureRequest, files: FileSet, scenario: str, where: str
) -> None:
    floor_binary()
    # Requested only once the floor binary is known to exist: a test failing before
    # using the benchmark fixture would also get pytest-benchmark's "not used" error.
    benchmark: Any = request.getfixturevalue("benchmark")
    benchmark.group = f"overhead n={N} (one round: python call + a round of the floor binary)"
    case = f"{scenario} {where} n={N}"
    with (
        fd_set(scenario, where, N, files) as s,
        floor_session([(s.pid, fd) for fd in s.fds]) as floor_rounds,
    ):
        floors: list[float] = []
        engines: list[float] = []
        counts: list[tuple[int, int, int, int]] = []

        def floor_round() -> None:
            # One replay and one engine run in the binary, which recorded the syscalls
            # of its own classification once.
            f = floor_rounds(1)
            assert f.groups == len(s.truth)
            floors.extend(f.floor)
            engines.extend(f.engine)
            counts.append((f.keys, f.compares, f.sames, f.ops))

        fns: dict[str, Callable[[], Any]] = {
            "python": lambda: kcmp_rs.classify_fds(s.pid, s.fds),
            "floor": floor_round,
        }
        results, medians = interleaved(benchmark, fns, budget=2.0, min_rounds=7, max_rounds=40)
        assert results["python"] == s.truth
        native = medians["python"]
        floor = statistics.median(floors)
        engine = statistics.median(engines)
        keys, compares, sames, ops = counts[-1]
        x = ratio(native, floor)
        assert x is not None
        judged = where == "self"
        RESULTS.add(
            "3 overhead vs syscall floor",
            case,
            f"{x:.2f}x (python {fmt_time(native)}, rust engine {fmt_time(engine)}, "
            f"floor {fmt_time(floor)}: {ops} syscalls, "
            f"{keys} key, {compares} kcmp, {sames} same)",
            f"<= {TARGET}x" if judged else "",
            (x <= TARGET) if judged else None,
        )
