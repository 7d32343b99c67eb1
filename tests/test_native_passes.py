"""The questions answered in one native pass (``shared_files``, ``epoll_targets``,
the CLI's epoll listing): thread ids taken as the kernel takes them, and the hostile
cases in which the earlier Python passes gave a silent partial answer."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any, Callable

import kcmp_rs
import pytest
from _checks import check_os_error, needs_kcmp, needs_root, needs_seccomp, raised
from _helpers import Spawn, run_in_child, thread_forever
from _scan_helpers import missing_pid, run_cli
from kcmp_rs import (
    FdNotOpenError,
    KcmpType,
    ProcessGoneError,
    baseline,
    holders,
    open_fds,
)
from kcmp_rs._queries import epoll_targets, shared_files

pytestmark = needs_kcmp


@contextlib.contextmanager
def a_thread() -> Iterator[int]:
    """A thread of this process, waiting until the block ends: its thread id."""
    started, done = threading.Event(), threading.Event()
    tid: list[int] = []

    def run() -> None:
        tid.append(threading.get_native_id())
        started.set()
        done.wait()

    t = threading.Thread(target=run, daemon=True)
    t.start()
    try:
        assert started.wait(30), "the thread did not start"
        yield tid[0]
    finally:
        done.set()
        t.join(30)


def _child_with_a_thread_and_reopen(path: str) -> dict[str, int]:
    """In a child: a thread that outlives setup, and a separate open of ``path``."""
    return {"tid": thread_forever(), "reopened": os.open(path, os.O_RDONLY)}


def _truth(pid1: int, pid2: int) -> set[tuple[int, int]]:
    """Every pair of fds the kernel says are one description (brute force, ctypes)."""
    return {
        (f1, f2)
        for f1 in open_fds(pid1)
        for f2 in open_fds(pid2)
        if baseline.kcmp(pid1, pid2, KcmpType.FILE, f1, f2) == 0
    }


def test_shared_files_takes_our_own_thread_ids() -> None:
    me = os.getpid()
    with a_thread() as tid:
        s = shared_files(me, tid)
        assert s.same_fd_table and s.reopened == ()
        mine = sorted(f for a, _ in s.shared for f in a)
        assert mine == open_fds(me)
        t = shared_files(tid, tid)
        assert t.same_fd_table and sorted(f for a, _ in t.shared for f in a) == mine


def test_shared_files_takes_a_childs_thread_ids(spawn: Spawn, tmp_path: object) -> None:
    path = os.path.join(str(tmp_path), "f")
    with open(path, "w") as f:
        f.write("x")
    inherited = os.open(path, os.O_RDONLY)
    try:
        child = spawn(lambda: _child_with_a_thread_and_reopen(path))
        me, tid = os.getpid(), child.data["tid"]
        assert tid != child.pid
        mine = os.open(path, os.O_RDONLY)  # a separate open on this side too
        try:
            by_pid, by_tid = shared_files(me, child.pid), shared_files(me, tid)
        finally:
            os.close(mine)
        assert by_tid.shared == by_pid.shared and by_tid.reopened == by_pid.reopened
        got = {(f1, f2) for a, b in by_tid.shared for f1 in a for f2 in b}
        assert got == _truth(me, tid)
        assert any(inherited in a for a, _ in by_tid.shared)
        assert ((mine,), (child.data["reopened"],)) in by_tid.reopened, by_tid.reopened
        assert shared_files(child.pid, tid).same_fd_table
        assert shared_files(tid, child.pid).same_fd_table
    finally:
        os.close(inherited)


def test_epoll_targets_take_thread_ids(spawn: Spawn) -> None:
    me = os.getpid()
    ep = select.epoll()
    a, b = socket.socketpair()
    try:
        ep.register(a.fileno(), select.EPOLLIN)
        child = spawn(lambda: _child_with_a_thread_and_reopen("/dev/null"))
        with a_thread() as tid:
            [t] = epoll_targets(tid, ep.fileno())
            assert t.status == "open"
            assert [(m.pid, m.fd) for m in t.holders] == [(tid, a.fileno())]
        # The child inherited both the set and the socket: found through its thread id.
        [t] = epoll_targets(me, ep.fileno(), [child.data["tid"]])
        assert {(m.pid, m.fd) for m in t.holders} == {
            (me, a.fileno()),
            (child.data["tid"], a.fileno()),
        }
        [t] = epoll_targets(child.data["tid"], ep.fileno())
        assert [(m.pid, m.fd) for m in t.holders] == [(child.data["tid"], a.fileno())]
    finally:
        a.close()
        b.close()
        ep.close()


def test_cli_share_and_epoll_take_a_thread_id(spawn: Spawn) -> None:
    ep = select.epoll()
    a, b = socket.socketpair()
    try:
        ep.register(a.fileno(), select.EPOLLIN)
        child = spawn(lambda: _child_with_a_thread_and_reopen("/dev/null"))
        tid = str(child.data["tid"])
        share = run_cli("share", str(child.pid), tid)
        assert share.returncode == 0, share.stderr
        text = share.stdout.decode()
        assert text.splitlines()[2].split() == ["FILES", "yes"], text
        assert f"shared by {child.pid} and {tid} (one fd table)" in text, text
        epoll = run_cli("epoll", tid, "-J")
        assert epoll.returncode == 0, epoll.stderr
        regs = json.loads(epoll.stdout)["registrations"]
        assert [(r["epfd"], r["tfd"], r["status"]) for r in regs] == [
            (ep.fileno(), a.fileno(), "open")
        ]
    finally:
        a.close()
        b.close()
        ep.close()


def test_an_epoll_fd_swapped_mid_call_is_never_an_empty_answer() -> None:
    """Another thread swaps the set's fd number between the set and a pipe while
    the set is asked about: every answer is the whole set, or an error that says so."""
    me = os.getpid()
    ep = select.epoll()
    a, b = socket.socketpair()
    r, w = os.pipe()
    epfd = os.dup(ep.fileno())
    stop = threading.Event()

    def swap() -> None:
        while not stop.is_set():
            os.dup2(r, epfd)
            os.dup2(ep.fileno(), epfd)

    swapper = threading.Thread(target=swap, daemon=True)
    answers: dict[str, int] = {}
    try:
        ep.register(a.fileno(), select.EPOLLIN)
        swapper.start()
        for _ in range(3000):
            try:
                regs = epoll_targets(me, epfd)
            except OSError as e:
                assert e.errno in (errno.EAGAIN, errno.EINVAL), e
                detail = {
                    errno.EAGAIN: "was closed or replaced during the call; try again",
                    errno.EINVAL: "is not an epoll fd",
                }[e.errno]
                assert type(e).__name__ in ("KcmpBlockingIOError", "KcmpError"), repr(e)
                assert str(e).endswith(f"fd {epfd} of process {me} {detail}"), e
                answers[errno.errorcode[e.errno]] = answers.get(errno.errorcode[e.errno], 0) + 1
                continue
            assert [t.tfd for t in regs] == [a.fileno()], regs
            answers["whole"] = answers.get("whole", 0) + 1
    finally:
        stop.set()
        swapper.join(30)
        for fd in (epfd, r, w):
            os.close(fd)
        a.close()
        b.close()
        ep.close()
    assert answers.get("whole", 0) > 0, answers


def test_a_reaped_process_is_process_gone_in_every_question(spawn: Spawn) -> None:
    gone = spawn(expect_exit=None)
    gone.kill()
    me = os.getpid()
    for call in (
        lambda: shared_files(me, gone.pid),
        lambda: shared_files(gone.pid, me),
        lambda: epoll_targets(gone.pid, 3),
        lambda: epoll_targets(me, 3, [gone.pid]),
        lambda: holders(gone.pid, 0, [me]),
        lambda: open_fds(gone.pid),
    ):
        e = raised(call)
        assert isinstance(e, ProcessGoneError), repr(e)
        assert e.pid == gone.pid and e.kind == "absent", e
        assert str(e).endswith(f"process {gone.pid} does not exist"), str(e)
    missing = missing_pid()
    e = raised(epoll_targets, missing, 0)
    assert isinstance(e, ProcessGoneError) and e.pid == missing


def _untyped(value: object) -> Any:
    """``value`` passed where the signature wants another type, on purpose."""
    return value


def test_questions_refuse_bad_arguments_as_the_native_calls_do() -> None:
    me = os.getpid()
    cases: list[tuple[Callable[[], object], type[BaseException], str]] = [
        (lambda: epoll_targets(me, True), TypeError, "epfd must be an int, not bool"),
        (lambda: epoll_targets(me, _untyped(1.0)), TypeError, "epfd must be an int, not float"),
        (lambda: epoll_targets(0, 3), ValueError, "pid must be a pid in 1..2147483647, got 0"),
        (lambda: epoll_targets(me, -1), ValueError, "epfd must be an fd in 0..2147483647, got -1"),
        (
            lambda: epoll_targets(me, 3, _untyped(5)),
            TypeError,
            "pids must be an iterable of ints, not int",
        ),
        (lambda: shared_files(me, -1), ValueError, "pid2 must be a pid in 1..2147483647, got -1"),
        (lambda: shared_files(_untyped("1"), me), TypeError, "pid1 must be an int, not str"),
        (
            lambda: shared_files(me, me, allow_pidfd_getfd=_untyped(1)),
            TypeError,
            "allow_pidfd_getfd must be a bool, not int",
        ),
    ]
    for call, cls, message in cases:
        e = raised(call)
        assert type(e) is cls and str(e) == message, (repr(e), message)


def test_epoll_of_an_fd_not_open_names_it() -> None:
    me = os.getpid()
    e = raised(epoll_targets, me, 999_999)
    check_os_error(
        e, FdNotOpenError, errno.EBADF, f"fd 999999 is not open in process {me}", me, 999_999
    )


def test_answers_from_numpy_ints_are_json_ready() -> None:
    np = pytest.importorskip("numpy", reason="numpy is a test dependency (requirements-dev)")
    me = os.getpid()
    r, w = os.pipe()
    try:
        h = holders(np.int64(me), np.int32(r), [me])
        s = shared_files(np.int64(me), np.int64(me))
        for doc in (h.to_dict(), s.to_dict()):
            assert json.loads(json.dumps(doc))
        assert type(h.pid) is int and type(h.fd) is int and type(s.pid1) is int
    finally:
        os.close(r)
        os.close(w)


def _not_dumpable() -> None:
    """In a child: no longer dumpable, so reading its fd links needs CAP_SYS_PTRACE."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    assert libc.prctl(4, 0, 0, 0, 0) == 0  # PR_SET_DUMPABLE, 0


@needs_root
@pytest.mark.skipif(shutil.which("setpriv") is None, reason="needs setpriv (util-linux)")
def test_cli_epoll_of_a_process_whose_links_cannot_be_read_says_so(spawn: Spawn) -> None:
    """Without CAP_SYS_PTRACE, root lists /proc/PID/fd of a process that is not
    dumpable but cannot read its links: the epoll listing refuses, as ``fds`` does,
    instead of finding no epoll sets."""
    child = spawn(_not_dumpable)
    drop = ["setpriv", "--bounding-set=-sys_ptrace", "--inh-caps=-sys_ptrace"]
    epoll = subprocess.run(
        [*drop, sys.executable, "-m", "kcmp_rs", "epoll", str(child.pid)],
        capture_output=True,
        timeout=120,
        check=False,
    )
    fds = subprocess.run(
        [*drop, sys.executable, "-m", "kcmp_rs", "fds", str(child.pid)],
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert fds.returncode == epoll.returncode == 1, (fds, epoll)
    assert epoll.stdout == b""
    # As root, the hint names what refuses root, not the rule root already meets.
    hint = (
        f"kcmp-rs: permission denied for process {child.pid} (refused to root: "
        "CAP_SYS_PTRACE missing from this process (a container or setpriv drops it), a "
        "process in a user namespace this one does not own, or a security module (Yama "
        "ptrace_scope 3, SELinux, AppArmor))\n"
    )
    assert epoll.stderr.decode() == fds.stderr.decode() == hint


# ---- the scan's JSON, written by the core ----


def test_scan_json_from_the_core_is_the_python_document_byte_for_byte() -> None:
    """``kcmp-rs scan -J`` and ``-j`` are written by Rust from the native report; the
    bytes are those of ``json.dumps(Scan.to_dict(), ensure_ascii=False)`` and of the
    JSON Lines built from it, hostile names (newline, ESC, a byte not UTF-8) included."""
    from _family import build_family
    from kcmp_rs.cli._audit import SCAN_RECORDS
    from kcmp_rs.cli._render import json_lines

    with build_family(3, 8, hostile_names=True, command=b"fam\x1b[31m\xff") as fam:
        pids = ",".join(map(str, fam.pids))
        for flags in ([], ["--all"]):
            document = run_cli("scan", "-p", pids, "-J", *flags)
            lines = run_cli("scan", "-p", pids, "-j", *flags)
            doc = kcmp_rs.scan(fam.pids, include_unshared=bool(flags)).to_dict()
            assert document.returncode == 0 and lines.returncode == 0, document.stderr
            expected = json.dumps(doc, ensure_ascii=False) + "\n"
            assert document.stdout == expected.encode(), flags
            assert lines.stdout == json_lines(doc, "scan", SCAN_RECORDS).encode(), flags
            assert b"target_bytes_b64" in document.stdout


def _native_calls_during(call: Callable[[], object]) -> int:
    """How many calls ``call()`` makes into the native module (its functions and the
    methods of its objects), counted with a profile hook."""
    from kcmp_rs import _native

    count = 0

    def hook(frame: object, event: str, arg: object) -> None:
        nonlocal count
        if event == "c_call":
            owner = getattr(arg, "__self__", None)
            modules = {getattr(arg, "__module__", None), type(owner).__module__}
            if owner is _native or _native.__name__ in modules:
                count += 1

    sys.setprofile(hook)
    try:
        call()
    finally:
        sys.setprofile(None)
    return count


def test_a_scan_crosses_into_the_core_a_constant_number_of_times() -> None:
    from _family import build_family

    counts = []
    for n in (2, 12):
        with build_family(n, 8) as fam:
            counts.append(_native_calls_during(lambda: kcmp_rs.scan(fam.pids)))
            counts.append(_native_calls_during(lambda: kcmp_rs.scan(fam.pids, boundary="net")))
    assert counts[0] == counts[2] and counts[1] == counts[3], counts
    assert counts[0] <= 8, counts


def test_reading_a_whole_scan_crosses_once_more_per_description() -> None:
    """The views build each description's members with one native call, on first
    access: reading everything costs the scan's constant plus one per description."""
    from _family import build_family

    with build_family(6, 8) as fam:
        scanned = kcmp_rs.scan(fam.pids)
        total = len(scanned.descriptions)
        alone = _native_calls_during(lambda: kcmp_rs.scan(fam.pids))
        whole = _native_calls_during(lambda: kcmp_rs.scan(fam.pids).to_dict())
    assert total > 6 and whole - alone == total + 3, (alone, whole, total)


# ---- sandboxes that refuse kcmp and pidfd_getfd both ----


def _both_blocked(pid: int, fds: list[int]) -> tuple[str, str, list[tuple[int, int]]]:
    """In a child: kcmp and pidfd_getfd refused (EPERM, as a container's profile
    does); classify the other process's fds with the copy allowed."""
    from _seccomp import install_filter

    install_filter(("errno", errno.EPERM), pidfd_getfd_errno=errno.EPERM)
    e = raised(kcmp_rs.classify_files, [(pid, f) for f in fds], allow_pidfd_getfd=True)
    undecided = list(getattr(e, "undecided", ()))
    return type(e).__name__, str(e), undecided


@needs_seccomp
def test_a_refused_pidfd_getfd_leaves_pairs_undecided_not_denied(spawn: Spawn) -> None:
    """With kcmp and pidfd_getfd both refused, ``allow_pidfd_getfd=True`` cannot copy:
    the pairs on one inode stay undecided (``KcmpUnavailableError``), never a
    ``ProcessAccessError`` blamed on the process being asked about."""
    from _helpers import run_in_child

    def two_opens() -> list[int]:
        return [os.open(os.devnull, os.O_RDONLY), os.open(os.devnull, os.O_RDONLY)]

    child = spawn(two_opens)
    name, text, undecided = run_in_child(_both_blocked, child.pid, child.data).unwrap()
    assert name == "KcmpUnavailableError", (name, text)
    assert sorted(undecided) == [(child.pid, f) for f in sorted(child.data)], text


# ---- holders where kcmp is blocked ----


def _holders_blocked(target: tuple[int, int], pids: list[int], allow: bool) -> dict[str, Any]:
    kcmp_rs.disable_kcmp()
    h = holders(*target, pids, allow_pidfd_getfd=allow)
    return {
        "members": [(m.pid, m.fd) for m in h.members],
        "undecided": list(h.undecided),
        "skipped": [(s.pid, s.reason) for s in h.skipped],
        "complete": h.complete,
    }


def _own_dups_blocked() -> dict[str, Any]:
    """In a child: a pipe's write end and a dup of it, inherited by a grandchild; the
    holders of the write end asked with kcmp disabled and no pidfd_getfd."""
    from _checks import holders_truth

    r, w = os.pipe()
    w2 = os.dup(w)
    hold_r, hold_w = os.pipe()
    grandchild = os.fork()
    if grandchild == 0:  # pragma: no cover - waits for its parent to let go
        os.close(hold_w)
        os.read(hold_r, 1)
        os._exit(0)
    try:
        me = os.getpid()
        truth = holders_truth((me, w), [me, grandchild])
        got = _holders_blocked((me, w), [me, grandchild], False)
        return {**got, "truth": truth, "me": me, "w": w, "w2": w2, "grandchild": grandchild}
    finally:
        os.close(hold_w)
        os.waitpid(grandchild, 0)
        for fd in (r, w, w2, hold_r):
            os.close(fd)


def test_holders_blocked_keep_the_askers_dups_when_the_target_is_undecided() -> None:
    """Without kcmp or pidfd_getfd the target cannot be compared with another
    process's fds; its own dups are still decided (F_DUPFD_QUERY, or the epoll test
    a pipe end allows) and are holders, and every other holder is undecided."""
    got = run_in_child(_own_dups_blocked).unwrap()
    me, w, w2 = got["me"], got["w"], got["w2"]
    members, undecided, truth = set(got["members"]), set(got["undecided"]), set(got["truth"])
    assert {(me, w), (me, w2)} <= members, got
    assert members <= truth, got
    assert truth <= members | undecided, got
    assert (got["grandchild"], w) in undecided and not got["complete"], got


def _holders_blocked_dying(pid: int, fd: int, victim: int) -> dict[str, Any]:
    """In a child: kcmp disabled; the victim is killed once every process is listed,
    before the candidates are compared (the progress call between the two)."""
    kcmp_rs.disable_kcmp()

    def kill_when_listed(done: int, total: int) -> None:
        if done == total:
            os.kill(victim, signal.SIGKILL)
            while _is_alive_not_zombie(victim):
                pass

    h = holders(pid, fd, [pid, victim], allow_pidfd_getfd=True, progress=kill_when_listed)
    return {
        "members": [(m.pid, m.fd) for m in h.members],
        "skipped": [(s.pid, s.reason) for s in h.skipped],
        "complete": h.complete,
    }


def _is_alive_not_zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            state = f.read().rsplit(b")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state not in (b"Z", b"X")


def test_holders_blocked_skip_a_candidate_that_dies_never_drop_it(spawn: Spawn) -> None:
    """With kcmp blocked and pidfd_getfd allowed, a candidate that dies between its
    listing and the comparison is skipped as exited: the answer says it is not
    complete instead of dropping the holder."""
    r, w = os.pipe()
    try:
        victim = spawn(expect_exit=None)  # inherits the write end
        me = os.getpid()
        got = run_in_child(_holders_blocked_dying, me, w, victim.pid).unwrap()
    finally:
        os.close(r)
        os.close(w)
    assert got["skipped"] == [(victim.pid, "exited")], got
    assert not got["complete"], got
    assert (me, w) in got["members"], got


def _kill_when(go: threading.Event, child: Any) -> None:
    go.wait(30)
    child.kill()


def test_a_process_reaped_while_its_fds_are_read_is_process_gone(spawn: Spawn) -> None:
    """Another thread kills and reaps a child with thousands of fds while its fds are
    listed and classified, again and again: every failure is ``ProcessGoneError``
    naming it (a directory read cut short by the reaping included), never an
    ``OSError`` about /proc."""
    outcomes: dict[str, int] = {}
    for _ in range(40):
        child = spawn(lambda: [os.dup(0) for _ in range(3000)], expect_exit=None)
        go = threading.Event()
        killer = threading.Thread(target=_kill_when, args=(go, child))
        killer.start()
        try:
            for call in (open_fds, kcmp_rs.classify_fds):
                go.set()
                try:
                    call(child.pid)
                    outcomes["answered"] = outcomes.get("answered", 0) + 1
                except ProcessGoneError as e:
                    assert e.pid == child.pid, e
                    outcomes[e.kind] = outcomes.get(e.kind, 0) + 1
        finally:
            killer.join(30)
    print(f"\nreaped while read: {outcomes}")
    assert sum(outcomes.values()) == 80, outcomes


def _leader_exits(control: int, report: int) -> None:
    """In a forked child: an epoll set watching ``control``, a thread that holds the
    process until ``control`` closes, then the main thread ends with pthread_exit (the
    process lives on). Reports ``"<thread id> <epoll fd>"``."""
    import ctypes

    watch = select.epoll()
    watch.register(control, select.EPOLLIN)

    def hold() -> None:
        os.write(report, f"{threading.get_native_id()} {watch.fileno()}".encode())
        os.read(control, 1)
        os._exit(0)

    threading.Thread(target=hold).start()
    ctypes.CDLL(None).pthread_exit(None)


def test_a_process_whose_main_thread_exited_is_read_through_a_live_thread() -> None:
    """pthread_exit in the main thread leaves the leader a zombie under the pid while
    the process runs on: every question reads it through its live thread, never skips
    it or refuses it as a zombie."""
    control_r, control_w = os.pipe()
    report_r, report_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child ends through its thread
        try:
            os.close(control_w)
            os.close(report_r)
            _leader_exits(control_r, report_w)
        finally:
            os._exit(1)
    os.close(control_r)
    os.close(report_w)
    try:
        tid, epfd = map(int, os.read(report_r, 64).split())
        deadline = time.monotonic() + 30
        while _is_alive_not_zombie(pid):  # the leader's exit is asynchronous
            assert time.monotonic() < deadline, "the main thread did not exit"
            time.sleep(0.001)
        result = kcmp_rs.scan([pid], include_unshared=True)
        assert result.skipped == (), result.skipped
        assert result.processes_read == 1
        assert {m.pid for d in result.descriptions for m in d.members} == {tid}
        assert any(m.fd == control_r for d in result.descriptions for m in d.members)
        found = holders(tid, control_r, [pid])
        assert found.skipped == () and found.processes_read == 1
        assert [(m.pid, m.fd) for m in found.members] == [(tid, control_r)]
        both = shared_files(pid, os.getpid())
        assert both.shared and not both.same_fd_table and both.undecided == ()
        assert (control_w,) not in [mine for _, mine in both.shared]  # closed in the child
        watched = kcmp_rs.epoll_targets(pid, epfd)
        assert [(w.tfd, w.status) for w in watched] == [(control_r, "open")]
        assert [(m.pid, m.fd) for m in watched[0].holders] == [(tid, control_r)]
        assert [w.tfd for w in kcmp_rs.epoll_targets(pid, epfd, [os.getpid()])] == [control_r]
        listed = run_cli("epoll", str(pid), "-J")  # every epoll set of the process
        assert listed.returncode == 0, listed.stderr
        found_sets = json.loads(listed.stdout)["registrations"]
        assert [(r["epfd"], r["tfd"], r["status"]) for r in found_sets] == [
            (epfd, control_r, "open")
        ]
    finally:
        os.close(control_w)
        os.close(report_r)
        os.waitpid(pid, 0)


def test_a_large_scan_classified_on_several_threads_equals_one_batch(spawn: Spawn) -> None:
    """Past 4,096 fds the scan deals its inode buckets to one classification thread
    per core: the descriptions are those of one ``classify_files`` batch."""
    bases = [os.open(os.devnull, os.O_RDONLY) for _ in range(3)]
    r, w = os.pipe()
    try:

        def many() -> int:
            for i in range(2500):
                os.dup([*bases, r, w][i % 5])
            return len(os.listdir("/proc/self/fd"))

        a, b = spawn(many), spawn(many)
        pids = [a.pid, b.pid]
        refs = [(p, f) for p in pids for f in open_fds(p)]
        assert len(refs) >= 5000
        truth = sorted(kcmp_rs.classify_files(refs))
        result = kcmp_rs.scan(pids, include_unshared=True)
        got = sorted(tuple((m.pid, m.fd) for m in d.members) for d in result.descriptions)
        assert got == truth
        assert result.fds_classified == len(refs) and result.skipped == ()
    finally:
        for fd in (*bases, r, w):
            os.close(fd)


def _threads_waiting(n: int) -> Callable[[], list[int]]:
    """A child's setup: ``n`` threads that wait forever; their thread ids."""

    def setup() -> list[int]:
        tids: list[int] = []
        started = threading.Barrier(n + 1)

        def wait() -> None:
            tids.append(threading.get_native_id())
            started.wait()
            threading.Event().wait()

        for _ in range(n):
            threading.Thread(target=wait, daemon=True).start()
        started.wait()
        return sorted(tids)

    return setup


@needs_kcmp
def test_holders_and_scan_over_processes_with_several_threads(spawn: Spawn) -> None:
    """Processes given with their thread ids: each fd table read once, under its
    smallest id, and the answers those of the kernel (the brute-force truth)."""
    from _checks import holders_truth

    r, w = os.pipe()
    try:
        a = spawn(_threads_waiting(3))
        b = spawn(_threads_waiting(2))
        me = os.getpid()
        tasks = [me, a.pid, *a.data, b.pid, *b.data]
        found = holders(me, r, tasks)
        truth = holders_truth((me, r), [me, a.pid, b.pid])
        assert [(m.pid, m.fd) for m in found.members] == truth
        assert {(a.pid, r), (b.pid, r)} <= set(truth)
        tables = {tuple(sorted([a.pid, *a.data])), tuple(sorted([b.pid, *b.data]))}
        assert set(found.fd_table_shared) == tables
        assert found.processes_read == len(tasks) and found.complete
        scanned = kcmp_rs.scan(tasks)
        assert set(scanned.fd_table_shared) == tables
        with_r = next(
            d for d in scanned.descriptions if (me, r) in [(m.pid, m.fd) for m in d.members]
        )
        assert [(m.pid, m.fd) for m in with_r.members] == truth
        assert not any(m.pid in a.data + b.data for d in scanned.descriptions for m in d.members)
    finally:
        os.close(r)
        os.close(w)


def test_holders_json_from_the_core_is_the_python_document_byte_for_byte() -> None:
    """``kcmp-rs holders -J`` and ``-j`` are written by Rust from the native report, as
    the scan's are: the bytes of ``json.dumps(Holders.to_dict(), ensure_ascii=False)``
    and of the JSON Lines built from it, with a hostile target and command, and a
    skipped process."""
    from _family import build_family
    from kcmp_rs.cli._render import json_lines

    records = {"description": "description", "skipped": "skipped", "undecided": "undecided"}
    with build_family(3, 8, hostile_names=True, command=b"fam\x1b[31m\xff") as fam:
        hostile = [
            d
            for d in kcmp_rs.scan(fam.pids).descriptions
            if "\n" in d.target and len({m.pid for m in d.members}) > 1
        ]
        assert hostile, "the family holds no shared description with a hostile name"
        pid, fd = hostile[0].members[0].pid, hostile[0].members[0].fd
        gone = 4_000_000  # above pid_max: no such process
        pids = [*fam.pids, gone]
        wanted = ",".join(map(str, pids))
        document = run_cli("holders", str(pid), str(fd), "-p", wanted, "-J")
        lines = run_cli("holders", str(pid), str(fd), "-p", wanted, "-j")
        doc = kcmp_rs.holders(pid, fd, pids).to_dict()
    assert doc["skipped"] == [{"pid": gone, "reason": "no such process"}]
    assert len(doc["description"]["members"]) > 1
    assert document.returncode == lines.returncode, (document.stderr, lines.stderr)
    assert document.stdout == (json.dumps(doc, ensure_ascii=False) + "\n").encode()
    assert lines.stdout == json_lines(doc, "holders", records).encode()
    assert b"target_bytes_b64" in document.stdout and b"command_bytes_b64" in document.stdout
