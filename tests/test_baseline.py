"""The ctypes baseline (``kcmp_rs.baseline``) as a reference: on random fd sets (opens
of one file and /dev/null, dups, pipes, socketpairs, epoll fds) the native ``kcmp`` and
``same_file`` agree with it and with the truth, order included; the baseline's three
classifications agree with the truth here and in another process; and the baseline
never imports the native module.
"""

from __future__ import annotations

import os
import random
import re
import select
import socket
from pathlib import Path
from typing import Any

import kcmp_rs
from _checks import needs_kcmp
from _helpers import partition
from conftest import Spawn
from hypothesis import given, settings
from hypothesis import strategies as st
from kcmp_rs import KcmpType, Order, baseline

ME = os.getpid()


# A regular file to open many times (one inode, many descriptions): this module.
_REGULAR_FILE = os.path.abspath(__file__)

OPS = st.lists(
    st.one_of(
        st.tuples(st.just("open"), st.sampled_from([_REGULAR_FILE, "/dev/null"])),
        st.tuples(st.just("dup"), st.integers(0, 63)),
        st.tuples(st.sampled_from(["pipe", "socketpair", "epoll"]), st.just(0)),
    ),
    min_size=1,
    max_size=12,
)


def build_fds(ops: list[tuple[str, Any]]) -> dict[int, int]:
    """Opens fds by ``ops``; returns {fd: id of its open file description}."""
    desc: dict[int, int] = {}
    ids = iter(range(10**6))
    for op, arg in ops:
        if op == "open":
            desc[os.open(arg, os.O_RDONLY)] = next(ids)
        elif op == "dup":
            if desc:
                src = sorted(desc)[arg % len(desc)]
                desc[os.dup(src)] = desc[src]
            else:
                desc[os.open("/dev/null", os.O_RDONLY)] = next(ids)
        elif op == "pipe":
            for fd in os.pipe():
                desc[fd] = next(ids)
        elif op == "socketpair":
            for s in socket.socketpair():
                desc[s.detach()] = next(ids)
        else:
            ep = select.epoll()
            desc[os.dup(ep.fileno())] = next(ids)
            ep.close()
    return desc


@needs_kcmp
@settings(max_examples=50, deadline=None)
@given(ops=OPS)
def test_native_agrees_with_baseline(ops: list[tuple[str, Any]]) -> None:
    desc = build_fds(ops)
    try:
        fds = sorted(desc)
        for a in fds:
            for b in fds:
                native = kcmp_rs.kcmp(ME, ME, KcmpType.FILE, a, b)
                assert native is baseline.kcmp(ME, ME, KcmpType.FILE, a, b), (a, b)
                assert (native is Order.EQUAL) == (desc[a] == desc[b]), (a, b)
                back = kcmp_rs.kcmp(ME, ME, KcmpType.FILE, b, a)
                flipped = {
                    Order.LESS: Order.GREATER,
                    Order.GREATER: Order.LESS,
                    Order.EQUAL: Order.EQUAL,
                }
                assert back is flipped[native], (a, b)
                same = kcmp_rs.same_file(ME, a, ME, b)
                assert same is baseline.same_file(ME, a, ME, b) is (desc[a] == desc[b])
    finally:
        for fd in desc:
            os.close(fd)


@needs_kcmp
@settings(max_examples=30, deadline=None)
@given(ops=OPS)
def test_baseline_classifications_agree(ops: list[tuple[str, Any]]) -> None:
    desc = build_fds(ops)
    try:
        fds = list(desc)
        random.Random(len(fds)).shuffle(fds)
        expected = partition(desc)
        assert baseline.classify_fds(ME, fds) == expected
        assert baseline.classify_fds_planned(ME, fds) == expected
        assert baseline.partition_pairwise(ME, fds + fds[:2]) == expected
    finally:
        for fd in desc:
            os.close(fd)


@needs_kcmp
def test_baseline_classifications_agree_on_another_process(spawn: Spawn) -> None:
    rng = random.Random(1234)
    kinds = ["open", "dup", "dup", "pipe", "socketpair", "epoll"]
    ops = [
        (k, rng.choice([_REGULAR_FILE, "/dev/null"]) if k == "open" else rng.randrange(64))
        for k in rng.choices(kinds, k=40)
    ]

    def setup() -> list[list[int]]:
        return [[fd, d] for fd, d in build_fds(ops).items()]

    child = spawn(setup)
    desc = {fd: d for fd, d in child.data}
    fds = sorted(desc)
    expected = partition(desc)
    assert len(expected) < len(fds)  # some descriptions are shared
    assert baseline.classify_fds(child.pid, fds) == expected
    assert baseline.classify_fds_planned(child.pid, fds) == expected
    assert baseline.partition_pairwise(child.pid, fds) == expected


def test_baseline_does_not_import_the_native_module() -> None:
    source = Path(baseline.__file__).read_text()
    assert "_native" not in re.sub(r'""".*?"""', "", source, flags=re.S)
