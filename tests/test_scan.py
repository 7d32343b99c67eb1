"""kcmp_rs.scan on process families the tests build (_family.py): the shared
descriptions found equal the ground truth; processes that exit or deny access are
reported, never fatal; names are escaped in tables and whole in JSON."""

from __future__ import annotations

import base64
import importlib
import importlib.util
import inspect
import json
import os
import pkgutil
import sys
from collections.abc import Iterator
from typing import Any

import kcmp_rs
import pytest
from _family import HOSTILE_NAME, MIN_FDS, Family, build_family
from _helpers import NOBODY, OTHER_UID, drop_privileges, run_in_child, thread_forever
from _scan_helpers import (
    check_scan_document,
    doc_groups,
    missing_pid,
)
from conftest import Spawn
from kcmp_rs import Description, Member, Scan, Skipped, _scan
from kcmp_rs.cli._render import escape, format_table, render_table, summary

Ref = tuple[int, int]

N_PROCS = 12
FDS_PER_PROC = 16


def groups(result: Scan) -> list[tuple[Ref, ...]]:
    return [tuple((m.pid, m.fd) for m in d.members) for d in result.descriptions]


def without(truth: list[tuple[Ref, ...]], pid: int) -> list[tuple[Ref, ...]]:
    """The shared groups left once ``pid`` is gone."""
    left = (tuple(r for r in g if r[0] != pid) for g in truth)
    return sorted(g for g in left if len(g) > 1)


@pytest.fixture
def family() -> Iterator[Family]:
    with build_family(N_PROCS, FDS_PER_PROC) as fam:
        yield fam


# ---- the API: kcmp_rs.scan ----


def test_scan_is_a_function_of_the_package_not_a_module() -> None:
    # A submodule named scan, once imported, would rebind kcmp_rs.scan to itself.
    for info in pkgutil.iter_modules(kcmp_rs.__path__):
        importlib.import_module(f"kcmp_rs.{info.name}")
    assert importlib.util.find_spec("kcmp_rs.scan") is None
    assert inspect.isfunction(kcmp_rs.scan) and "scan" in kcmp_rs.__all__


def test_result_types_are_exported() -> None:
    for cls in (Scan, Description, Member, Skipped):
        assert cls.__name__ in kcmp_rs.__all__
        assert getattr(kcmp_rs, cls.__name__) is cls
    # The return annotation alone: evaluating `X | None` ones needs Python 3.10.
    module = sys.modules[kcmp_rs.scan.__module__]
    assert eval(kcmp_rs.scan.__annotations__["return"], vars(module)) is Scan


# ---- the family itself ----


def test_family_is_what_it_says(family: Family) -> None:
    assert len(family.pids) == N_PROCS
    for pid in family.pids:
        assert len(family.refs(pid)) == FDS_PER_PROC
        assert sorted(int(n) for n in os.listdir(f"/proc/{pid}/fd")) == [
            fd for _, fd in family.refs(pid)
        ]
    labels = set(family.labels.values())
    assert {"lifeline", "pair:0", "passed:0", "sock0:0", "sock1:0", "pipe-r:0"} <= labels
    assert len(family.apart) == N_PROCS // 2
    # Every kind of sharing the family promises is in the truth.
    kinds = {family.labels[g[0]].split(":")[0] for g in family.groups}
    assert kinds == {"devnull", "lifeline", "pair", "passed", "private"}


def test_family_cleans_up() -> None:
    with build_family(3, MIN_FDS) as fam:
        pids, directory = fam.pids, fam.directory
        assert os.path.isdir(directory)
    assert not os.path.exists(directory)
    for pid in pids:
        assert not os.path.exists(f"/proc/{pid}"), pid


# ---- ground truth ----


def test_shared_descriptions_equal_ground_truth(family: Family) -> None:
    result = kcmp_rs.scan(family.pids)
    assert groups(result) == family.groups
    assert result.skipped == ()
    assert result.processes_read == N_PROCS
    assert result.fds_classified == N_PROCS * FDS_PER_PROC
    assert result.undecided == ()
    assert result.fd_table_shared == ()
    assert result.shared == result.descriptions
    for a, b in family.apart:  # the two ends of a pipe are two descriptions
        assert not any({a, b} <= set(g) for g in groups(result))
    for d in result.descriptions:
        first = (d.members[0].pid, d.members[0].fd)
        label = family.labels[first]
        assert d.mode == family.mode(first)
        raw = family.target(first)
        if raw is None:
            assert label == "lifeline" and d.target.startswith("pipe:[")
        else:
            assert os.fsencode(d.target) == raw
        expected_type = {"devnull": "CHR", "lifeline": "FIFO"}.get(label.split(":")[0], "REG")
        assert d.type == expected_type, (label, d)
        assert all(m.command == family.command == "kcmp-family" for m in d.members)


def test_include_unshared_lists_every_fd_once(family: Family) -> None:
    result = kcmp_rs.scan(family.pids, include_unshared=True)
    found = groups(result)
    assert sorted(r for g in found for r in g) == sorted(family.labels)
    for g in found:
        assert len({family.labels[r] for r in g}) == 1, g
    assert [g for g in found if len(g) > 1] == family.groups
    assert groups(Scan(result.shared, (), 0, 0)) == family.groups
    by_label = {family.labels[g[0]]: d for g, d in zip(found, result.descriptions)}
    assert (by_label["sock0:0"].type, by_label["sock0:0"].mode) == ("SOCK", "rw")
    assert (by_label["pipe-r:0"].type, by_label["pipe-r:0"].mode) == ("FIFO", "r")
    assert (by_label["pipe-w:0"].type, by_label["pipe-w:0"].mode) == ("FIFO", "w")
    modes = {d.mode for d in result.descriptions}
    assert {"r", "w", "rw"} <= modes


def test_scan_of_every_process_reads_proc(family: Family, monkeypatch: pytest.MonkeyPatch) -> None:
    # pids=None means every process in /proc; the test limits "every" to its family.
    monkeypatch.setattr(_scan, "list_pids", lambda: list(family.pids))
    assert groups(kcmp_rs.scan()) == family.groups


def test_progress_is_called_per_process(family: Family) -> None:
    calls: list[tuple[int, int]] = []
    kcmp_rs.scan(family.pids, progress=lambda done, total: calls.append((done, total)))
    assert [c[1] for c in calls] == [N_PROCS] * len(calls)
    assert [c[0] for c in calls] == list(range(1, N_PROCS + 1))


def test_scan_holds_a_bounded_number_of_fds(family: Family, fd_leak_check: None) -> None:
    """The scan's pins hold a pidfd per process up to the documented cap (64, or a
    sixteenth of the soft fd limit) while it runs, and nothing after."""
    import resource

    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    cap = min(64, soft // 16)
    before = len(os.listdir("/proc/self/fd")) + min(cap, len(family.pids))
    seen: list[int] = []
    kcmp_rs.scan(
        family.pids,
        include_unshared=True,
        progress=lambda done, total: seen.append(len(os.listdir("/proc/self/fd"))),
    )
    assert seen and max(seen) <= before


def _scan_under_fd_limit(pids: list[int], limit: int) -> tuple[int, int]:
    import resource

    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (limit, hard))
    result = kcmp_rs.scan(pids)
    return result.processes_read, len(result.descriptions)


def test_scan_of_many_processes_fits_a_low_fd_limit() -> None:
    """The native batches pin each pid with a pidfd only up to a bound (a sixteenth of
    the soft fd limit, at most 64), then by start time: 120 processes fit 32 fds."""
    with build_family(120, MIN_FDS) as fam:
        expected = kcmp_rs.scan(fam.pids)
        result = run_in_child(_scan_under_fd_limit, list(fam.pids), 32)
        read, shared = result.unwrap()
    assert read == expected.processes_read == 120
    assert shared == len(expected.descriptions) > 0


def test_pid_arguments_are_checked() -> None:
    with pytest.raises(TypeError, match=r"^each pid in pids must be an int, not bool$"):
        kcmp_rs.scan([True])
    with pytest.raises(TypeError, match=r"^each pid in pids must be an int, not str$"):
        kcmp_rs.scan(["12"])  # type: ignore[list-item]
    with pytest.raises(ValueError, match=r"^each pid in pids must be a pid in 1\.\.2147483647"):
        kcmp_rs.scan([0])


# ---- processes that cannot be read ----


def test_process_exiting_before_its_fds_are_read(family: Family) -> None:
    victim = max(family.pids)  # read last: pids are read in ascending order
    calls: list[int] = []

    def progress(done: int, total: int) -> None:
        calls.append(done)
        if len(calls) == 1:
            family.kill(victim)

    result = kcmp_rs.scan(family.pids, progress=progress)
    assert result.skipped == (Skipped(victim, "exited"),)
    assert result.processes_read == N_PROCS - 1
    assert groups(result) == without(family.groups, victim)
    assert result.fds_classified == (N_PROCS - 1) * FDS_PER_PROC


def test_process_exiting_after_its_fds_were_read(family: Family) -> None:
    victim = min(family.pids)

    def progress(done: int, total: int) -> None:
        if done == total:  # every fd listed, none classified yet
            family.kill(victim)

    result = kcmp_rs.scan(family.pids, progress=progress)
    assert result.skipped == (Skipped(victim, "exited"),)
    assert result.processes_read == N_PROCS - 1
    assert groups(result) == without(family.groups, victim)


def test_missing_process_is_skipped(family: Family) -> None:
    gone = missing_pid()
    result = kcmp_rs.scan([*family.pids, gone])
    assert result.skipped == (Skipped(gone, "no such process"),)
    assert groups(result) == family.groups


def _drop_to_nobody() -> int:
    drop_privileges(NOBODY)
    return os.getuid()


def _scan_as_other_user(denier: int) -> dict[str, Any]:
    """In a forked child: become another unprivileged user, build a family of one's
    own, and scan it together with ``denier`` (a process of yet another user)."""
    drop_privileges(OTHER_UID)
    with build_family(4, 10) as family:
        result = kcmp_rs.scan([*family.pids, denier])
        return {"scan": result.to_dict(), "truth": family.groups}


def test_process_denying_access_is_skipped(spawn: Spawn) -> None:
    denier = spawn(_drop_to_nobody)
    assert denier.data == NOBODY
    data = run_in_child(_scan_as_other_user, denier.pid).unwrap()
    doc = data["scan"]
    check_scan_document(doc)
    assert doc["skipped"] == [{"pid": denier.pid, "reason": "permission denied"}]
    assert doc["processes_read"] == 4
    assert data["truth"] and doc_groups(doc["descriptions"]) == data["truth"]


# ---- fd tables shared (threads) ----


def _start_thread() -> dict[str, int]:
    r, w = os.pipe()
    dup = os.dup(r)
    return {"tid": thread_forever(), "r": r, "w": w, "dup": dup}


def test_processes_sharing_an_fd_table_are_read_once(spawn: Spawn) -> None:
    child = spawn(_start_thread)
    pid, tid = child.pid, child.data["tid"]
    reader = min(pid, tid)
    result = kcmp_rs.scan([pid, tid])
    assert result.fd_table_shared == ((reader, max(pid, tid)),)
    assert result.processes_read == 2
    assert result.skipped == ()
    assert all(m.pid == reader for d in result.descriptions for m in d.members)
    assert ((reader, child.data["r"]), (reader, child.data["dup"])) in groups(result)
    assert result.fds_classified == len(os.listdir(f"/proc/{pid}/fd"))
    assert result.to_dict()["fd_table_shared"] == [[reader, max(pid, tid)]]


# ---- kcmp blocked ----


def _scan_without_kcmp(pids: tuple[int, ...], allow_pidfd_getfd: bool) -> dict[str, Any]:
    kcmp_rs.disable_kcmp()
    return dict(kcmp_rs.scan(pids, allow_pidfd_getfd=allow_pidfd_getfd).to_dict())


def test_blocked_kcmp_reports_undecided_fds(family: Family) -> None:
    doc = run_in_child(_scan_without_kcmp, family.pids, False).unwrap()
    check_scan_document(doc)
    undecided = {(u["pid"], u["fd"]) for u in doc["undecided"]}
    # /dev/null in every process: one inode, many descriptions, so no fstat can tell.
    assert undecided
    assert undecided <= set(family.labels)
    found = doc_groups(doc["descriptions"])
    assert not any(set(g) & undecided for g in found)
    decided = (tuple(r for r in g if r not in undecided) for g in family.groups)
    assert found == sorted(g for g in decided if len(g) > 1)
    assert doc["fds_classified"] + len(undecided) == len(family.labels)


def test_blocked_kcmp_with_pidfd_getfd_decides_everything(family: Family) -> None:
    doc = run_in_child(_scan_without_kcmp, family.pids, True).unwrap()
    assert doc["undecided"] == []
    assert doc_groups(doc["descriptions"]) == family.groups


# ---- names ----


def test_hostile_names_escaped_in_tables_and_whole_in_json() -> None:
    command = b"fam\x1b[31m\xff"
    with build_family(2, MIN_FDS, hostile_names=True, command=command) as fam:
        result = kcmp_rs.scan(fam.pids)
        pair = next(r for r, label in fam.labels.items() if label == "pair:0")
        raw = fam.target(pair)
    assert raw is not None and HOSTILE_NAME in raw
    d = next(d for d in result.descriptions if pair in [(m.pid, m.fd) for m in d.members])
    assert os.fsencode(d.target) == raw
    assert os.fsencode(d.members[0].command) == command

    doc = d.to_dict()
    assert doc["target"] == raw.decode("utf-8", "replace")
    assert "\n" in doc["target"] and "\x1b[31m" in doc["target"]
    assert base64.b64decode(doc["target_bytes_b64"]) == raw
    assert doc["members"][0]["command"] == "fam\x1b[31m\ufffd"
    assert base64.b64decode(doc["members"][0]["command_bytes_b64"]) == command
    text = json.dumps(result.to_dict(), ensure_ascii=False)
    assert json.loads(text.encode("utf-8").decode("utf-8")) == result.to_dict()

    table = format_table(result)
    table.encode("ascii")  # every control character and foreign byte escaped
    assert "evil\\n\\x1b[31mred\\xff-pair-0" in table
    assert "fam\\x1b[31m\\xff" in table
    # A target in UTF-8 carries no base64 field.
    plain = next(x for x in result.descriptions if x.target == "/dev/null")
    assert "target_bytes_b64" not in plain.to_dict()


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("/tmp/plain name", "/tmp/plain name"),
        ("a\nb\tc\rd", "a\\nb\\tc\\rd"),
        ("\x1b[31mred\x1b[0m", "\\x1b[31mred\\x1b[0m"),
        ("x\x00\x7f", "x\\x00\\x7f"),
        ("back\\slash", "back\\\\slash"),
        ("bad\udcff\udc80", "bad\\xff\\x80"),  # bytes that were not UTF-8
        ("\x9b2J", "\\u009b2J"),  # a C1 control character, not a byte
        ("abc\u202edcba", "abc\\u202edcba"),  # bidi override
        ("caf\u00e9 \u6f22", "caf\u00e9 \u6f22"),  # printable: shown as is
    ],
)
def test_escape(text: str, shown: str) -> None:
    assert escape(text) == shown


def test_to_dict_of_names_not_in_utf8() -> None:
    member = Member(1, 2, os.fsdecode(b"a\xffb"))
    assert member.to_dict() == {
        "pid": 1,
        "fd": 2,
        "command": "a\ufffdb",
        "command_bytes_b64": base64.b64encode(b"a\xffb").decode(),
    }
    d = Description("/x\ny", "rw", (member,), "REG")
    assert d.to_dict()["target"] == "/x\ny" and "target_bytes_b64" not in d.to_dict()


def test_render_table_stacks_multiline_cells() -> None:
    text = render_table(["A", "LONGER", "C"], [["1", "x\nyy", "end"], ["22", "z", "e"]])
    assert text == "A   LONGER  C\n1   x       end\n    yy\n22  z       e\n"


def test_a_long_summary_goes_on_lines_a_terminal_holds() -> None:
    reasons = ["exited", "zombie", "permission denied", "fd table owner exited",
               "error: Input/output error", "boundary unreadable: no cgroup line"]  # fmt: skip
    result = Scan((), tuple(Skipped(100 + i, r) for i, r in enumerate(reasons)), 2, 3)
    text = summary(result)
    assert len(text.splitlines()) > 1 and all(len(line) <= 120 for line in text.splitlines())
    assert " ".join(text.split()) == " ".join(
        ("2 processes read, 3 fds classified, 0 descriptions shared, 6 processes skipped ("
         + ", ".join(f"1 {r}" for r in sorted(reasons)) + ")").split()
    )  # fmt: skip


def test_summary_counts_skipped_by_reason() -> None:
    result = Scan(
        (),
        (Skipped(5, "exited"), Skipped(6, "permission denied"), Skipped(7, "exited")),
        1,
        3,
        ((5, 4),),
        ((8, 9),),
    )
    assert " ".join(summary(result).split()) == (  # 122 columns: on two lines
        "1 process read, 3 fds classified, 0 descriptions shared, 1 fd table shared, "
        "1 fd undecided, 3 processes skipped (2 exited, 1 permission denied)"
    )
    assert result.to_dict() == {
        "schema_version": 2,
        "descriptions": [],
        "skipped": [
            {"pid": 5, "reason": "exited"},
            {"pid": 6, "reason": "permission denied"},
            {"pid": 7, "reason": "exited"},
        ],
        "processes_read": 1,
        "fds_classified": 3,
        "undecided": [{"pid": 5, "fd": 4}],
        "fd_table_shared": [[8, 9]],
    }
