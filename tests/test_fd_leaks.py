"""Fd-leak checking (issue 12): ``FdLeakCheck`` around blocks of this process, and the
pytest plugin (``--fd-leaks``) run by ``pytester`` in a subprocess.

Each leak is told by open file description: a new one, a dup of an fd open before
(``dup of fd 1``), a number closed and reused for another file; children started in
the block that still hold this process's files are named with their pid, and
grandchildren under their parent. The plugin is off without the option, warns with
it, fails a test with ``=fail``, and leaves alone what fixtures open in setup and
close in teardown.
"""

from __future__ import annotations

import errno
import fcntl
import importlib.metadata
import json
import os
import select
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import NoReturn

import kcmp_rs
import pytest
from _checks import needs_seccomp
from _helpers import fork, run_in_child
from _seccomp import install_filter
from kcmp_rs import (
    ChildHolder,
    Description,
    FdLeakCheck,
    FdLeaks,
    LeakedFd,
    Member,
    _native,
    baseline,
)
from kcmp_rs._proc import read_command

pytest_plugins = ["pytester"]

ME = os.getpid()
#: How long a child may take to report or to exit before the test fails.
DEADLINE = 30.0


def pipe_target(fd: int) -> str:
    return f"pipe:[{os.fstat(fd).st_ino}]"


def first_description_of(fd: int, before: set[int]) -> int:
    """The smallest of ``before`` on the open file description of ``fd``, asked
    through the ctypes baseline rather than the package under test."""
    return min(o for o in before if o == fd or baseline.same_file(ME, o, ME, fd))


def reap(pid: int) -> int:
    """The exit code of a child that is about to exit; kills it past the deadline."""
    deadline = time.monotonic() + DEADLINE
    while True:
        got, status = os.waitpid(pid, os.WNOHANG)
        if got == pid:
            return os.waitstatus_to_exitcode(status)
        if time.monotonic() > deadline:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
            raise AssertionError(f"child {pid} did not exit within {DEADLINE} s")
        time.sleep(0.002)


def in_child(body: Callable[[], object]) -> NoReturn:
    """Runs ``body`` in a forked child and leaves at once: exit 0, or 1 if it raised
    (never back into pytest)."""
    code = 1
    try:
        body()
        code = 0
    finally:
        os._exit(code)


def reader_child(r: int) -> int:
    """Forks a child that waits for one byte on ``r``, then exits 0 (``release``)."""
    pid = fork()
    if pid == 0:  # pragma: no cover - the child
        in_child(lambda: os.read(r, 1))
    return pid


def release(w: int, pid: int) -> None:
    """Lets a ``reader_child`` go and reaps it."""
    os.write(w, b"x")
    assert reap(pid) == 0


def read_line(fd: int) -> bytes:
    """One short message from a child, within the deadline."""
    ready, _, _ = select.select([fd], [], [], DEADLINE)
    assert ready, "the child did not report in time"
    return os.read(fd, 64)


@pytest.fixture
def scratch(tmp_path: Path) -> Iterator[tuple[int, str]]:
    """A regular file opened before the test's check (fd, path), closed after."""
    path = tmp_path / "old"
    path.write_bytes(b"old")
    fd = os.open(path, os.O_RDONLY)
    yield fd, str(path)
    os.close(fd)


# ---- the context manager: fds ----


def test_the_report_shows_hostile_names_escaped_on_one_line() -> None:
    """A leaked file's name with a newline, an escape sequence and a byte that is not
    UTF-8: the report keeps each leak on its line, prints no control character and
    carries only valid text (a worker of pytest-xdist sends it to the controller)."""
    name = "x\n  fd 99 (REG, r) forged\x1b[31m\udcff"
    leaks = FdLeaks(
        ME,
        (LeakedFd(7, name, "r", "REG"),),
        (ChildHolder(8, ME, "sh\x1b]0;t\x07", (Description(name, "r", (Member(ME, 7, "p"),)),)),),
    )
    text = leaks.report("a block")
    lines = text.splitlines()
    assert len(lines) == 4, lines
    assert lines[1] == "  fd 7 (REG, r) x\\n  fd 99 (REG, r) forged\\x1b[31m\\xff: " + (
        LeakedFd(7, name, "r", "REG").what()
    )
    assert "sh\\x1b]0;t\\x07" in lines[2]
    assert all(line.isprintable() for line in lines)
    text.encode("utf-8")  # no lone surrogate left


@pytest.mark.usefixtures("fd_leak_check")
def test_a_pipe_left_open_is_two_new_descriptions() -> None:
    with FdLeakCheck() as check:
        r, w = os.pipe()
    try:
        assert check.leaks == FdLeaks(
            ME,
            (
                LeakedFd(r, pipe_target(r), "r", "FIFO"),
                LeakedFd(w, pipe_target(w), "w", "FIFO"),
            ),
        )
        assert not check.leaks.clean
        assert all(leak.new_description for leak in check.leaks.fds)
        assert check.leaks.report("a block").splitlines() == [
            "fd leaks in a block:",
            f"  fd {r} (FIFO, r) {pipe_target(r)}: a new open file description",
            f"  fd {w} (FIFO, w) {pipe_target(w)}: a new open file description",
        ]
    finally:
        os.close(r)
        os.close(w)


@pytest.mark.usefixtures("fd_leak_check")
def test_a_dup_of_stdout_is_named_after_the_fd_open_before() -> None:
    before = set(kcmp_rs.open_fds(ME))
    with FdLeakCheck() as check:
        low = os.dup(1)
        high = fcntl.fcntl(1, fcntl.F_DUPFD_CLOEXEC, 300)
    try:
        first = first_description_of(1, before)
        assert [(leak.fd, leak.dup_of, leak.same_as) for leak in check.leaks.fds] == [
            (low, first, None),
            (high, first, None),
        ]
        assert not any(leak.new_description or leak.reused for leak in check.leaks.fds)
        assert f": dup of fd {first} (another fd of a description open before)" in str(check.leaks)
    finally:
        os.close(low)
        os.close(high)


@pytest.mark.usefixtures("fd_leak_check")
def test_a_new_description_under_several_fds_names_the_first() -> None:
    with FdLeakCheck() as check:
        r, w = os.pipe()
        r2 = os.dup(r)
    try:
        assert [(leak.fd, leak.dup_of, leak.same_as) for leak in check.leaks.fds] == [
            (r, None, None),
            (w, None, None),
            (r2, None, r),
        ]
        assert f"fd {r2} (FIFO, r) {pipe_target(r)}: the same new description as fd {r}" in (
            check.leaks.report()
        )
    finally:
        for fd in (r, w, r2):
            os.close(fd)


@pytest.mark.usefixtures("fd_leak_check")
def test_a_number_closed_and_reused_for_another_file_is_a_new_description(
    scratch: tuple[int, str], tmp_path: Path
) -> None:
    old, _ = scratch
    keep = os.dup(old)  # the old description lives on, under another number
    other = tmp_path / "other"
    other.write_bytes(b"other")
    try:
        with FdLeakCheck() as check:
            tmp = os.open(other, os.O_RDWR)
            os.dup2(tmp, old)  # closes the old description's fd `old`, reuses it
            os.close(tmp)
            extra = os.dup(old)
        try:
            assert check.leaks.fds == (
                LeakedFd(old, str(other), "rw", "REG", reused=True),
                LeakedFd(extra, str(other), "rw", "REG", same_as=old),
            )
            assert f"fd {old} was another file before and was closed" in str(check.leaks)
        finally:
            os.close(extra)
    finally:
        os.close(keep)


@pytest.mark.usefixtures("fd_leak_check")
def test_a_reused_number_that_is_a_dup_of_stdout_says_both(scratch: tuple[int, str]) -> None:
    old, _ = scratch
    before = set(kcmp_rs.open_fds(ME))
    saved = os.dup(old)
    try:
        with FdLeakCheck() as check:
            os.dup2(1, old)
        (leak,) = check.leaks.fds
        assert (leak.fd, leak.dup_of, leak.reused) == (old, first_description_of(1, before), True)
    finally:
        os.dup2(saved, old)
        os.close(saved)


@pytest.mark.usefixtures("fd_leak_check")
def test_opening_and_closing_reports_nothing(scratch: tuple[int, str]) -> None:
    old, path = scratch
    with FdLeakCheck() as check:
        r, w = os.pipe()
        with open(path, "rb") as f:
            f.read()
        os.close(r)
        os.close(w)
        os.close(os.dup(old))
    assert check.leaks == FdLeaks(ME)
    assert check.leaks.clean
    assert check.leaks.report() == f"no fd leaks in process {ME}"


def test_an_fd_closed_in_the_block_is_no_leak(scratch: tuple[int, str]) -> None:
    old, _ = scratch
    extra = os.dup(old)
    with FdLeakCheck() as check:
        os.close(extra)
    assert check.leaks.clean


@pytest.mark.usefixtures("fd_leak_check")
def test_the_check_holds_no_fd_across_the_block() -> None:
    before = kcmp_rs.open_fds(ME)
    with FdLeakCheck():
        inside = kcmp_rs.open_fds(ME)
    assert inside == before


# ---- the context manager: children ----


@pytest.mark.usefixtures("fd_leak_check")
def test_a_child_started_in_the_block_holding_our_pipe_is_named(pipe: tuple[int, int]) -> None:
    r, w = pipe
    with FdLeakCheck() as check:
        pid = reader_child(r)
    release(w, pid)
    assert check.leaks.fds == ()
    (child,) = check.leaks.children
    assert (child.pid, child.ppid, child.command) == (pid, ME, read_command(ME))
    held = [[(m.pid, m.fd) for m in d.members] for d in child.descriptions]
    assert [(ME, r), (pid, r)] in held
    assert [(ME, w), (pid, w)] in held
    assert (
        f"  child process {pid} ({child.command}, parent {ME}), started meanwhile, still holds:"
        in (str(check.leaks))
    )
    assert f"    fd {r} (FIFO, r) {pipe_target(r)} as its fd {r}" in str(check.leaks)


def parent_of_a_reader(r: int, w: int, ready_w: int) -> None:
    """The child of the grandchild test: starts a grandchild that waits on ``r``,
    closes its own copies of the pipe, reports the grandchild's pid, reaps it."""
    grandchild = os.fork()
    if grandchild == 0:
        in_child(lambda: os.read(r, 1))
    os.close(r)
    os.close(w)
    os.write(ready_w, b"%d" % grandchild)
    assert os.waitstatus_to_exitcode(os.waitpid(grandchild, 0)[1]) == 0


@pytest.mark.usefixtures("fd_leak_check")
def test_a_grandchild_holding_our_pipe_is_named_under_its_parent(
    pipe: tuple[int, int],
) -> None:
    r, w = pipe
    ready_r, ready_w = os.pipe()
    try:
        with FdLeakCheck() as check:
            pid = fork()
            if pid == 0:  # pragma: no cover - the child, then the grandchild
                in_child(lambda: parent_of_a_reader(r, w, ready_w))
            grandchild = int(read_line(ready_r))
        release(w, pid)
    finally:
        os.close(ready_r)
        os.close(ready_w)
    found = {c.pid: c for c in check.leaks.children}
    assert set(found) == {pid, grandchild}
    assert found[grandchild].ppid == pid
    members = {(m.pid, m.fd) for d in found[grandchild].descriptions for m in d.members}
    assert {(ME, r), (grandchild, r)} <= members
    # The child closed the pipe: it holds only the rest of what it inherited.
    assert (pid, r) not in {(m.pid, m.fd) for d in found[pid].descriptions for m in d.members}


def test_children_started_before_the_block_are_not_reported(pipe: tuple[int, int]) -> None:
    r, w = pipe
    pid = reader_child(r)
    try:
        with FdLeakCheck() as check:
            pass
        assert check.leaks.children == ()
    finally:
        release(w, pid)


def test_a_child_that_exited_unreaped_holds_nothing() -> None:
    with FdLeakCheck() as check:
        pid = fork()
        if pid == 0:  # pragma: no cover - the child
            in_child(lambda: None)
        deadline = time.monotonic() + DEADLINE
        while not _native.is_zombie(pid):
            assert time.monotonic() < deadline, f"child {pid} did not exit"
            time.sleep(0.002)
    assert reap(pid) == 0
    assert check.leaks.children == ()


# ---- the context manager: the result and its misuse ----


def test_the_result_is_json_with_every_field(pipe: tuple[int, int]) -> None:
    r, w = pipe
    with FdLeakCheck() as check:
        pid = reader_child(r)
        dup = os.dup(r)
    release(w, pid)
    try:
        doc = json.loads(json.dumps(check.leaks.to_dict()))
        target = pipe_target(r)
    finally:
        os.close(dup)
    assert doc["schema_version"] == 2 and doc["pid"] == ME and doc["undecided"] == []
    assert doc["fds"] == [
        {
            "fd": dup,
            "type": "FIFO",
            "mode": "r",
            "target": target,
            "dup_of": r,
            "same_as": None,
            "reused": False,
            "undecided": False,
        }
    ]
    (child,) = doc["children"]
    assert (child["pid"], child["ppid"]) == (pid, ME)
    pipe_entry = next(d for d in child["descriptions"] if (d["target"], d["mode"]) == (target, "r"))
    assert pipe_entry["members"] == [
        {"pid": ME, "fd": r, "command": read_command(ME)},
        {"pid": ME, "fd": dup, "command": read_command(ME)},
        {"pid": pid, "fd": r, "command": read_command(ME)},
    ]


def test_leaks_before_the_block_has_ended_is_an_error() -> None:
    check = FdLeakCheck()
    with pytest.raises(RuntimeError) as info:
        _ = check.leaks
    assert str(info.value) == (
        "FdLeakCheck.leaks is known once the block has ended (after the with statement, or stop())"
    )
    with check, pytest.raises(RuntimeError):
        _ = check.leaks
    assert check.leaks.clean


def test_stop_without_start_is_an_error() -> None:
    with pytest.raises(RuntimeError) as info:
        FdLeakCheck().stop()
    assert str(info.value) == "FdLeakCheck.stop() without start(): the check was not started"


@pytest.mark.usefixtures("fd_leak_check")
def test_a_check_runs_again_and_the_block_may_raise() -> None:
    check = FdLeakCheck()
    with pytest.raises(KeyError), check:
        r, w = os.pipe()
        raise KeyError("in the block")
    os.close(r)
    os.close(w)
    assert [leak.fd for leak in check.leaks.fds] == [r, w]
    with check:
        pass
    assert check.leaks.clean


def test_the_result_types_are_exported() -> None:
    for cls in (FdLeakCheck, FdLeaks, LeakedFd, ChildHolder):
        assert cls.__name__ in kcmp_rs.__all__ and getattr(kcmp_rs, cls.__name__) is cls


# ---- where kcmp is blocked ----


def _check_without_kcmp(path: str) -> tuple[list[tuple[int, int | None, bool]], list[int], int]:
    """In a child: kcmp and F_DUPFD_QUERY blocked by seccomp; a pipe end dup'ed (the
    epoll test decides it), a regular file dup'ed (the lock test decides it) and an
    O_PATH fd dup'ed (nothing decides it)."""
    install_filter(("errno", errno.EPERM), dupfd_query_errno=errno.EINVAL)
    r, _ = os.pipe()
    f = os.open(path, os.O_RDONLY)
    o = os.open(path, os.O_PATH)
    with FdLeakCheck() as check:
        pipe_dup = os.dup(r)
        file_dup = os.dup(f)
        path_dup = os.dup(o)
    leaks = check.leaks
    assert "  undecided (kcmp blocked, no exact fallback): " in leaks.report()
    assert f"fd {path_dup} (" in leaks.report(), leaks.report()
    assert f"{path}: a new description or a dup" in leaks.report(), leaks.report()
    found = [(x.fd, x.dup_of, x.undecided) for x in leaks.fds]
    assert found == [(pipe_dup, r, False), (file_dup, f, False), (path_dup, None, True)]
    return found, [fd for _, fd in leaks.undecided], o


@needs_seccomp
def test_without_kcmp_the_fallbacks_decide_or_say_undecided(tmp_path: Path) -> None:
    path = tmp_path / "file"
    path.write_bytes(b"")
    (_, _, (path_dup, _, _)), undecided, o = run_in_child(_check_without_kcmp, str(path)).unwrap()
    assert sorted(undecided) == sorted({path_dup, o})


# ---- the pytest plugin ----

CONFTEST = """
import json, os
import pytest

CHILDREN = []


def record(**fds):
    with open("record.jsonl", "a") as f:
        f.write(json.dumps(fds) + "\\n")


@pytest.fixture(scope="session")
def children():
    return CHILDREN


@pytest.fixture(scope="session")
def session_pipe():
    r, w = os.pipe()
    yield r, w
    os.close(r)
    os.close(w)


def pytest_sessionfinish(session):
    for child in CHILDREN:
        child.wait(timeout=30)
"""

LEAKY = """
import os, subprocess
from conftest import record

OLD = os.open(os.devnull, os.O_RDONLY)  # open before any test


def test_pipe_leak():
    r, w = os.pipe()
    record(pipe_r=r, pipe_w=w)


def test_dup_of_stdout():
    record(dup=os.dup(1))


def test_number_reused():
    tmp = os.open(__file__, os.O_RDONLY)
    os.dup2(tmp, OLD)
    os.close(tmp)
    record(reused=OLD)


def test_child_holds_pipe(session_pipe, children):
    r, w = session_pipe
    child = subprocess.Popen(["cat"], stdin=r, stdout=subprocess.DEVNULL)
    children.append(child)
    record(child=child.pid, child_r=r)


def test_open_and_close():
    r, w = os.pipe()
    os.close(r)
    os.close(w)
"""

CLEAN = """
import os
import pytest


@pytest.fixture
def devnull():
    fd = os.open(os.devnull, os.O_RDONLY)
    yield fd
    os.close(fd)


@pytest.fixture
def closer():
    fds = []
    yield fds
    for fd in fds:
        os.close(fd)


@pytest.fixture(scope="module")
def module_file():
    with open(__file__, "rb") as f:
        yield f


def test_fixture_opens_in_setup_and_closes_in_teardown(devnull):
    os.fstat(devnull)


def test_fixture_closes_what_the_test_opened(closer):
    closer.extend(os.pipe())


def test_module_fixture_set_up_here_outlives_the_test(module_file):
    module_file.read()


def test_module_fixture_again(module_file):
    module_file.seek(0)
"""


def run_inner(
    pytester: pytest.Pytester, source: str, *args: str
) -> tuple[pytest.RunResult, dict[str, int]]:
    """Runs ``source`` as test_inner.py under a pytest of its own (a subprocess, which
    loads the plugin through its entry point); returns the run and the fds and pids
    its tests recorded."""
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_inner=source)
    # The other installed plugins take most of a run's start-up and play no part here.
    quiet = ("-p", "no:cacheprovider", "-p", "no:hypothesispytest", "-p", "no:benchmark")
    result = pytester.runpytest_subprocess(*quiet, *args)
    recorded: dict[str, int] = {}
    log = pytester.path / "record.jsonl"
    if log.exists():
        for line in log.read_text().splitlines():
            recorded.update(json.loads(line))
    return result, recorded


def leak_lines(recorded: dict[str, int], indent: str) -> list[str]:
    """The report lines of LEAKY's tests, as fnmatch patterns; the body of a warning
    is indented further than that of a failure."""
    n = recorded
    return [
        "*fd leaks in test_inner.py::test_pipe_leak:",
        f"{indent}fd {n['pipe_r']} (FIFO, r) pipe:[[]*[]]: a new open file description",
        f"{indent}fd {n['pipe_w']} (FIFO, w) pipe:[[]*[]]: a new open file description",
        "*fd leaks in test_inner.py::test_dup_of_stdout:",
        # Under pytest's capture fd 1 is a dup of the capture file during a test, and
        # the original stdout again when pytest is between tests: the dup is of the
        # capture file's own fd, which the pattern leaves open.
        f"{indent}fd {n['dup']} (REG, rw) *: dup of fd * (another fd of a description open before)",
        "*fd leaks in test_inner.py::test_number_reused:",
        f"{indent}fd {n['reused']} (REG, r) */test_inner.py: a new open file description; "
        f"fd {n['reused']} was another file before and was closed",
        "*fd leaks in test_inner.py::test_child_holds_pipe:",
        f"{indent}child process {n['child']} (cat, parent *), started meanwhile, still holds:",
        f"{indent}  fd {n['child_r']} (FIFO, r) pipe:[[]*[]] as its fd 0",
    ]


def test_the_plugin_is_registered_as_a_pytest11_entry_point() -> None:
    if sys.version_info >= (3, 10):
        group = importlib.metadata.entry_points(group="pytest11")
    else:  # 3.9 answers a dict of groups
        group = importlib.metadata.entry_points().get("pytest11", [])
    found = {e.name: e.value for e in group}
    assert found.get("kcmp_rs") == "kcmp_rs.pytest_plugin"


def test_importing_the_package_does_not_import_pytest() -> None:
    code = (
        "import sys, kcmp_rs\n"
        "print('pytest' in sys.modules, 'kcmp_rs.pytest_plugin' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


def test_warn_mode_reports_each_leaking_test_by_name(pytester: pytest.Pytester) -> None:
    result, recorded = run_inner(pytester, LEAKY, "--fd-leaks")
    result.assert_outcomes(passed=5, warnings=4)
    result.stdout.fnmatch_lines(
        ["*warnings summary*", "test_inner.py::test_pipe_leak", "*FdLeakWarning: fd leaks*"]
    )
    result.stdout.fnmatch_lines(leak_lines(recorded, "    "), consecutive=False)
    assert "test_open_and_close:" not in result.stdout.str()


def test_fail_mode_errors_each_leaking_test_in_its_teardown(pytester: pytest.Pytester) -> None:
    result, recorded = run_inner(pytester, LEAKY, "--fd-leaks=fail")
    result.assert_outcomes(passed=5, errors=4)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(["*ERROR at teardown of test_pipe_leak*"])
    result.stdout.fnmatch_lines(leak_lines(recorded, "  "), consecutive=False)
    result.stdout.fnmatch_lines(["ERROR test_inner.py::test_pipe_leak - Failed: fd leaks in *"])
    assert "ERROR test_inner.py::test_open_and_close" not in result.stdout.str()


def test_fixtures_opening_in_setup_and_closing_in_teardown_are_not_leaks(
    pytester: pytest.Pytester,
) -> None:
    result, _ = run_inner(pytester, CLEAN, "--fd-leaks=fail", "-W", "error")
    result.assert_outcomes(passed=4)
    assert "fd leaks" not in result.stdout.str()


def test_a_failing_or_skipped_test_is_not_checked(pytester: pytest.Pytester) -> None:
    source = """
import os, pytest

def test_fails():
    r, w = os.pipe()
    assert False, "its own failure"

def test_skips():
    r, w = os.pipe()
    pytest.skip("not here")
"""
    result, _ = run_inner(pytester, source, "--fd-leaks=fail")
    result.assert_outcomes(failed=1, skipped=1)
    assert "fd leaks" not in result.stdout.str()


def test_without_the_option_nothing_runs_around_a_test(pytester: pytest.Pytester) -> None:
    source = """
import os

def test_leaks_and_looks(request):
    os.pipe()
    manager = request.config.pluginmanager
    assert manager.get_plugin("kcmp_rs") is not None  # the entry point was loaded
    assert manager.get_plugin("kcmp_rs-fd-leaks") is None
    for hook in ("pytest_runtest_call", "pytest_runtest_teardown"):
        impls = getattr(manager.hook, hook).get_hookimpls()
        assert not [i for i in impls if "kcmp_rs" in i.plugin_name], hook
"""
    result, _ = run_inner(pytester, source)
    result.assert_outcomes(passed=1)
    assert "fd leaks" not in result.stdout.str()


def test_the_ini_option_sets_the_mode_and_the_command_line_wins(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeini("[pytest]\nfd_leaks = fail\n")
    result, _ = run_inner(pytester, LEAKY)
    result.assert_outcomes(passed=5, errors=4)
    result, _ = run_inner(pytester, LEAKY, "--fd-leaks=off")
    result.assert_outcomes(passed=5)


def test_a_bad_mode_is_a_usage_error(pytester: pytest.Pytester) -> None:
    result, _ = run_inner(pytester, CLEAN, "--fd-leaks=loud")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        ["*error: argument --fd-leaks: invalid choice: 'loud' (choose from *warn*fail*off*)"]
    )
    pytester.makeini("[pytest]\nfd_leaks = loud\n")
    result, _ = run_inner(pytester, CLEAN)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        ["ERROR: fd_leaks = 'loud' in the ini file is not a mode: use warn, fail or off"]
    )
