"""Figure 1: native ``kcmp_rs.classify_fds`` vs the ctypes baselines.

For every scenario x where x n, one fd set is built and all three implementations
classify it in the same run, interleaved round by round (``interleaved``):

- ``native``: ``kcmp_rs.classify_fds(pid, fds)``.
- ``sorted``: ``baseline.classify_fds``: ``sorted`` with kcmp as the comparison, then
  equal neighbours joined (about n log2 n ctypes kcmp calls).
- ``planned``: ``baseline.classify_fds_planned``: the native plan (stat buckets, binary
  search by kcmp) in Python with ctypes.

Each must return the groups the set was built with. The engine's counts come from
``_native.classify_fds_stats``. The pytest-benchmark entry of a case is the time of
one round (all three once); the summary has the per-implementation medians. Slow
cases get few rounds.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import kcmp_rs
import pytest
from _benchlib import RESULTS, SCENARIOS, SIZES, WHERES, FdSet, FileSet, fd_set, interleaved
from kcmp_rs import _native, baseline

CASES = [(s, w, n) for s in SCENARIOS for w in WHERES for n in SIZES]


@pytest.fixture(params=CASES, ids=lambda c: f"{c[0]}-{c[1]}-{c[2]}")
def fdset(request: pytest.FixtureRequest, files: FileSet) -> Iterator[FdSet]:
    scenario, where, n = request.param
    with fd_set(scenario, where, n, files) as s:
        yield s


def test_classify(benchmark: Any, fdset: FdSet) -> None:
    s = fdset
    groups, keys, compares, sames = _native.classify_fds_stats(s.pid, s.fds)
    assert groups == s.truth
    case = RESULTS.case(s.scenario, s.where, s.n)
    case.stats = (len(groups), keys, compares, sames)
    benchmark.group = f"classify n={s.n} (one round: native + sorted + planned)"
    results, medians = interleaved(
        benchmark,
        {
            "native": lambda: kcmp_rs.classify_fds(s.pid, s.fds),
            "sorted": lambda: baseline.classify_fds(s.pid, s.fds),
            "planned": lambda: baseline.classify_fds_planned(s.pid, s.fds),
        },
        budget=2.0,
    )
    for impl, result in results.items():
        assert list(result) == s.truth, impl
    case.native, case.sorted, case.planned = (
        medians["native"],
        medians["sorted"],
        medians["planned"],
    )
