"""Call counts of classify_fds in this process: how many kcmp calls and equality checks
a batch costs, as stated in docs/guarantees.md, on this kernel and without F_DUPFD_QUERY."""

from __future__ import annotations

import errno
import math
import os
from pathlib import Path
from typing import Literal

import kcmp_rs
import pytest
from _checks import SECCOMP_MISSING
from _fdset import FdSet, scratch_files
from _helpers import nofile, run_in_child
from _seccomp import install_filter
from kcmp_rs._native import classify_fds_stats

Groups = list[tuple[int, ...]]
OrderName = Literal["fd", "kernel"]
ORDERS: list[OrderName] = ["fd", "kernel"]


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    return scratch_files(tmp_path_factory)


def ceil_log2(x: int) -> int:
    return max(0, math.ceil(math.log2(x)))


def stats(fds: list[int], order: OrderName = "fd") -> tuple[Groups, int, int, int]:
    return classify_fds_stats(os.getpid(), fds, order)


def _stats_without_dupfd_query(fds: list[int], order: OrderName) -> tuple[Groups, int, int, int]:
    install_filter(("allow",), dupfd_query_errno=errno.EINVAL)
    assert not kcmp_rs.support().dupfd_query
    return stats(fds, order)


class Counter:
    """Counts a classification as this kernel does it (``native``), or in a child whose
    F_DUPFD_QUERY is refused (``refused``), as on a kernel before 6.10.

    ``check``: what one equality check costs. F_DUPFD_QUERY answers it alone; without
    it the oracle's equality test declines (one ``same`` call) and kcmp answers (one
    compare), so every bound on checks doubles.
    """

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.dupfd_query = mode == "native" and kcmp_rs.support().dupfd_query
        self.check = 1 if self.dupfd_query else 2

    def __call__(self, fds: list[int], order: OrderName = "fd") -> tuple[Groups, int, int, int]:
        if self.mode == "native":
            return stats(fds, order)
        got: tuple[Groups, int, int, int] = run_in_child(
            _stats_without_dupfd_query, fds, order
        ).unwrap()
        return got


@pytest.fixture(params=["native", "refused"], ids=["kernel-as-is", "no-dupfd-query"])
def counted(request: pytest.FixtureRequest) -> Counter:
    if request.param == "refused" and SECCOMP_MISSING is not None:
        pytest.skip(SECCOMP_MISSING)
    return Counter(request.param)


def test_counts_distinct_files_need_no_comparison(files: list[Path]) -> None:
    """Fds of distinct inodes are told apart by their key alone: no kcmp, no equality test."""
    with FdSet(files) as s:
        for kind in ["socketpair", "memfd", "memfd"] * 8:  # each fd its own inode
            s.do(kind, 1, 0)
        s.do("open", 0, 0)
        s.do("pipe", 0, 0)  # one inode, two descriptions: not distinct
        fds = sorted(s.owned)[:-2]
        for order in ORDERS:
            groups, keys, compares, sames = stats(fds, order)
            assert len(groups) == len(fds)
            assert keys == len(fds)
            assert sames == 0
            if order == "fd":
                assert compares == 0
            else:
                # Only the merge of the one-group buckets into kernel order compares.
                assert compares <= len(fds) * ceil_log2(len(fds))


def test_counts_dup_heavy(files: list[Path], counted: Counter) -> None:
    """Many dups of a few descriptions (distinct inodes): about one check per fd."""
    with FdSet(files) as s:
        for kind in ["memfd", "socketpair", "open"]:  # four inodes
            s.do(kind, 0, 0)
        bases = sorted(s.owned)
        for i in range(300):
            s.owned.add(os.dup(bases[i % len(bases)]))
        fds = sorted(s.owned)
        groups, keys, compares, sames = counted(fds)
        assert len(groups) == len(bases)
        assert keys == len(fds)
        # Each dup: one equality check against its group's rep (F_DUPFD_QUERY, or
        # without it a declined test and one kcmp); each group's first fd costs
        # nothing. The end-of-batch check that groups still hold together adds one
        # check per dup (in buckets of more than 16 fds, as here: smaller ones have
        # every pair checked).
        joined = len(fds) - len(groups)
        assert compares + sames <= counted.check * (2 * joined + 2 * len(groups))
        assert compares + sames >= counted.check * 2 * joined
        assert (compares == 0) is counted.dupfd_query, (compares, sames)


@pytest.mark.parametrize(("k", "dups"), [(1, 50), (4, 3), (5, 0), (6, 2), (64, 3), (1000, 1)])
def test_counts_one_inode_many_descriptions(
    files: list[Path], k: int, dups: int, counted: Counter
) -> None:
    """k separate opens of one file (one key), each with ``dups`` dups.

    Stated bound: (kcmp calls + equality tests) per fd <= ceil(log2(k + 1)) + 2, where
    the 2 covers the linear equality scan while the bucket holds <= 4 reps and the one
    merge sort of those reps when it grows past them (amortised over the fds), plus
    (n - 1) / 2 for a bucket of n <= 16 fds, whose every pair is checked at the end.
    Without F_DUPFD_QUERY each equality check is a declined test and a kcmp: the terms
    that count checks double."""
    with nofile(k * (dups + 2)), FdSet(files) as s:
        for i in range(k):
            fd = os.open(files[1], os.O_RDONLY | os.O_CLOEXEC)
            s.owned.add(fd)
            for _ in range(dups):
                s.owned.add(os.dup(fd))
            if i % 3 == 0:
                s.owned.add(os.dup(fd))
        fds = sorted(s.owned)
        for order in ORDERS:
            groups, keys, compares, sames = counted(fds, order)
            assert len(groups) == k
            assert keys == len(fds)
            per_fd = (compares + sames) / len(fds)
            # A bucket of at most 16 fds has every pair checked at the end of the batch:
            # (n - 1) / 2 per fd, at most 7.5.
            pairwise = (len(fds) - 1) / 2 if len(fds) <= 16 else 0
            bound = ceil_log2(k + 1) + counted.check * (2 + pairwise)
            assert per_fd <= bound, (order, compares, sames, len(fds))
            if k > 5 or (order == "kernel" and k > 1):
                assert compares > 0  # past 5 descriptions, kcmp's order is used


def test_counts_binary_search_not_linear(files: list[Path], counted: Counter) -> None:
    """The last of k = 1000 descriptions costs ~log2(k) comparisons, not ~k: counted as
    the difference between classifying k and k - 1 of them."""
    with nofile(1000), FdSet(files) as s:
        for _ in range(1000):
            s.owned.add(os.open(files[0], os.O_RDONLY | os.O_CLOEXEC))
        fds = sorted(s.owned)
        _, _, c_all, s_all = counted(fds)
        _, _, c_less, s_less = counted(fds[:-1])
        # The binary search, plus one check against the most recent group before it
        # and one end-of-batch check that the new rep still sits in order.
        extra = (c_all + s_all) - (c_less + s_less)
        assert extra <= ceil_log2(1001) + 2 * counted.check, (c_all, s_all, c_less, s_less)
