"""The result types of ``scan()`` and ``holders()`` are views of the native report:
built on first access, once, and then indistinguishable from ordinary instances."""

from __future__ import annotations

import copy
import dataclasses
import os
import pickle
from collections.abc import Callable

import pytest
from conftest import Spawn
from kcmp_rs import Description, Holders, Member, Scan, _native, holders, scan
from kcmp_rs._results import deferred
from kcmp_rs._scan import scan_report


def _plain(result: Scan) -> Scan:
    """``result`` rebuilt field by field: an ordinary dataclass with the same values."""
    return Scan(
        descriptions=tuple(
            Description(d.target, d.mode, tuple(d.members), d.type, d.boundaries)
            for d in result.descriptions
        ),
        skipped=result.skipped,
        processes_read=result.processes_read,
        fds_classified=result.fds_classified,
        undecided=result.undecided,
        fd_table_shared=result.fd_table_shared,
    )


def test_a_scan_builds_its_descriptions_and_members_on_first_access(
    spawn: Spawn, pipe: tuple[int, int]
) -> None:
    child = spawn()
    result = scan([os.getpid(), child.pid])
    assert "descriptions" not in vars(result)
    assert result.processes_read == 2  # the scalars are there from the start
    found = result.descriptions
    assert "descriptions" in vars(result) and result.descriptions is found
    assert len(found) > 1 and all("members" not in vars(d) for d in found)
    assert found[-1].members and all("members" not in vars(d) for d in found[:-1])
    held = next(d for d in found if (os.getpid(), pipe[0]) in [(m.pid, m.fd) for m in d.members])
    assert held.members == tuple(sorted(held.members, key=lambda m: (m.pid, m.fd)))
    assert (child.pid, pipe[0]) in [(m.pid, m.fd) for m in held.members]
    assert all(isinstance(m, Member) and m.command for m in held.members)


def test_a_built_view_equals_the_plain_result_and_drops_the_report(
    spawn: Spawn, pipe: tuple[int, int]
) -> None:
    child = spawn()
    result = scan([os.getpid(), child.pid])
    plain = _plain(result)
    assert result == plain and plain == result
    assert hash(result.descriptions[0]) == hash(plain.descriptions[0])
    assert repr(result) == repr(plain)
    assert "_later" not in vars(result)
    assert all("_later" not in vars(d) for d in result.descriptions)


def test_unbuilt_views_copy_pickle_and_replace_as_their_values(
    spawn: Spawn, pipe: tuple[int, int]
) -> None:
    child = spawn()
    pids = [os.getpid(), child.pid]
    makers: list[Callable[[Scan], Scan]] = [
        lambda s: pickle.loads(pickle.dumps(s)),
        copy.copy,
        copy.deepcopy,
        lambda s: dataclasses.replace(s, processes_read=s.processes_read),
    ]
    for make in makers:
        result = scan(pids)
        again = make(result)
        assert type(again) is Scan and "_later" not in vars(again)
        assert again == _plain(result)
        assert again.to_dict() == result.to_dict()


def test_holders_builds_its_description_on_first_access(
    spawn: Spawn, pipe: tuple[int, int]
) -> None:
    child = spawn()
    found = holders(os.getpid(), pipe[1], [os.getpid(), child.pid])
    assert "description" not in vars(found)
    assert found.complete and found.processes_read == 2
    assert [(m.pid, m.fd) for m in found.members] == sorted(
        [(os.getpid(), pipe[1]), (child.pid, pipe[1])]
    )
    assert pickle.loads(pickle.dumps(found)) == found
    assert isinstance(found, Holders) and "_later" not in vars(found)


def test_deferred_refuses_fields_it_cannot_defer_exactly() -> None:
    member = Member(1, 2, "x")
    with pytest.raises(TypeError, match=r"Description: fields \['boundaries', 'members'"):
        deferred(Description, {"target": "t"}, {"members": lambda: (member,)})
    with pytest.raises(TypeError, match="a field with a default cannot be deferred"):
        deferred(
            Description,
            {"target": "t", "mode": "r", "members": (member,), "boundaries": ()},
            {"type": lambda: "REG"},
        )
    with pytest.raises(AttributeError, match="'Description' object has no attribute 'nope'"):
        name = "nope"  # no such field: the lookup must fail as on any object
        getattr(Description("t", "r", (member,)), name)


def test_a_report_refuses_a_description_past_its_end(spawn: Spawn) -> None:
    report = scan_report([spawn().pid])
    n = len(report.descriptions())
    assert n > 0 and report.members(n - 1)
    with pytest.raises(IndexError, match=rf"^description {n} of {n}: no such description$"):
        report.members(n)
    with pytest.raises(OverflowError):
        report.members(-1)
    with pytest.raises(IndexError, match=rf"^description {n} of {n}: no such description$"):
        report.write_json(1, False, [0, n])
    assert isinstance(report, _native.ScanReport)
