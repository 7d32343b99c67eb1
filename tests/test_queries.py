"""holders(), shared_files() and epoll_targets() against brute-force kernel truth, on
process families the tests build: fork inheritance, dup2 to other numbers, fds passed
over Unix sockets, ends closed in some children, threads, zombies, denied access."""

from __future__ import annotations

import errno
import json
import os
import select
import socket
import threading
from collections.abc import Callable

import pytest
from _checks import holders_truth, needs_kcmp, needs_root, raised
from _helpers import ChildProcess, Spawn, drop_to_nobody, reopened_after_fork, run_in_child
from kcmp_rs import KcmpType, KcmpUnavailableError, baseline, disable_kcmp, open_fds
from kcmp_rs._queries import _epoll_targets, epoll_targets, holders, shared_files

pytestmark = needs_kcmp


def refs(h: object) -> list[tuple[int, int]]:
    return [(m.pid, m.fd) for m in h.members]  # type: ignore[attr-defined]


def send_fd(sock: socket.socket, fd: int) -> None:
    socket.send_fds(sock, [b"x"], [fd])


def test_holders_of_a_pipe_end_across_a_family(spawn: Spawn, pipe: tuple[int, int]) -> None:
    r, w = pipe
    a, b = socket.socketpair()
    with a, b:
        send_fd(a, w)  # waiting in the socket for the child that receives it

        def inherits_and_moves() -> int:
            os.dup2(w, 77)
            os.close(w)
            return 77

        def closes_the_write_end() -> None:
            os.close(w)

        def receives_it() -> int:
            _, fds, _, _ = socket.recv_fds(b, 1, 1)
            os.close(w)
            return fds[0]

        moved = spawn(inherits_and_moves)
        closed = spawn(closes_the_write_end)
        passed = spawn(receives_it)
        plain = spawn()
        kids = [moved, closed, passed, plain]
        me = os.getpid()
        pids = [me] + [k.pid for k in kids]
        h = holders(me, w, pids)
        assert refs(h) == holders_truth((me, w), pids)
        assert (moved.pid, 77) in refs(h)
        assert (passed.pid, passed.data) in refs(h)
        assert not any(p == closed.pid for p, _ in refs(h))
        assert h.complete and h.skipped == () and h.undecided == ()
        assert h.description.type == "FIFO" and h.description.mode == "w"
        assert h.description.target == f"pipe:[{os.fstat(w).st_ino}]"
        assert {m.command for m in h.members} <= {"python", "python3", "pytest"} | {
            m.command for m in h.members
        }
        assert h.fds_compared == sum(len(open_fds(p)) for p in pids), "one kcmp per fd"
        # The read end is another description of the same inode: never a holder.
        assert (me, r) not in refs(h)
        for m in h.members:
            assert m.command, m


def test_threads_are_read_once(pipe: tuple[int, int]) -> None:
    _, w = pipe
    started, release = threading.Event(), threading.Event()
    tids: list[int] = []

    def worker() -> None:
        tids.append(threading.get_native_id())
        started.set()
        release.wait(30)

    t = threading.Thread(target=worker)
    t.start()
    try:
        started.wait(30)
        me = os.getpid()
        reader = min(me, tids[0])  # pids wrap: the thread's id may be the smaller
        h = holders(me, w, [me, tids[0]])
        assert refs(h) == [(reader, w)], "one fd table: listed once, under the smallest id"
        assert h.fd_table_shared == ((reader, max(me, tids[0])),)
        assert h.processes_read == 2
    finally:
        release.set()
        t.join()


def test_gone_and_zombie_processes_are_skipped_with_reasons(
    spawn: Spawn, pipe: tuple[int, int], zombie: int
) -> None:
    _, w = pipe
    gone = spawn(expect_exit=None)
    gone.kill()
    me = os.getpid()
    h = holders(me, w, [me, zombie, gone.pid])
    assert refs(h) == [(me, w)]
    reasons = {s.pid: s.reason for s in h.skipped}
    assert reasons == {zombie: "zombie", gone.pid: "no such process"}
    assert not h.complete
    d = json.loads(json.dumps(h.to_dict()))
    assert d["schema_version"] == 2
    assert d["description"]["members"] == [{"pid": me, "fd": w, "command": h.members[0].command}]
    assert {s["pid"]: s["reason"] for s in d["skipped"]} == reasons


@needs_root
def test_a_process_that_denies_access_is_skipped(spawn: Spawn) -> None:
    root_child = spawn()

    def search() -> tuple[list[tuple[int, int]], dict[int, str]]:
        drop_to_nobody()
        _, w = os.pipe()
        h = holders(os.getpid(), w, [os.getpid(), root_child.pid])
        return refs(h), {s.pid: s.reason for s in h.skipped}

    found, skipped = run_in_child(search).unwrap()
    assert len(found) == 1
    assert skipped == {root_child.pid: "permission denied"}


def test_target_errors_name_the_pid_and_fd(spawn: Spawn) -> None:
    me = os.getpid()
    gone = spawn(expect_exit=None)
    gone.kill()
    e = raised(holders, gone.pid, 0, [me])
    assert isinstance(e, ProcessLookupError)
    assert str(e).endswith(f"process {gone.pid} does not exist")
    e = raised(holders, me, 999_999, [me])
    assert isinstance(e, OSError) and e.errno == errno.EBADF
    assert str(e).endswith(f"fd 999999 is not open in process {me}")
    e = raised(holders, me, 0, [me], progress=5)
    assert isinstance(e, TypeError)
    assert str(e) == "progress must be callable or None, not int"
    e = raised(holders, me, 0, [me], allow_pidfd_getfd="yes")
    assert str(e) == "allow_pidfd_getfd must be a bool, not str"


def test_progress_counts_every_process(pipe: tuple[int, int]) -> None:
    calls: list[tuple[int, int]] = []
    me = os.getpid()
    holders(me, pipe[1], [me], progress=lambda d, t: calls.append((d, t)))
    assert calls == [(1, 1)]


def test_an_exception_from_progress_ends_the_search(pipe: tuple[int, int]) -> None:
    class Stop(Exception):
        pass

    def stop(done: int, total: int) -> None:
        raise Stop(f"{done}/{total}")

    me = os.getpid()
    with pytest.raises(Stop, match=r"^1/1$"):
        holders(me, pipe[1], [me], progress=stop)


def _recorder(calls: list[tuple[int, int]]) -> Callable[[int, int], None]:
    return lambda done, total: calls.append((done, total))


@needs_kcmp
def test_holders_across_several_steps_and_threads_is_the_truth() -> None:
    """300 processes: several steps of the search, each split among threads; the
    answer is the brute-force truth, in order, and progress climbs to the total."""
    from _family import build_family

    with build_family(300, 12) as family:
        pids = list(family.pids)
        for target in (next(g for g in family.groups if len(g) > 100)[0], (pids[7], 6)):
            calls: list[tuple[int, int]] = []
            found = holders(*target, pids, progress=_recorder(calls))
            assert [(m.pid, m.fd) for m in found.members] == holders_truth(target, pids)
            assert found.complete and found.processes_read == 300
            assert calls[-1] == (300, 300) and len(calls) > 1
            assert [d for d, _ in calls] == sorted(d for d, _ in calls)


# ---- shared_files ----


def test_shared_files_tells_inherited_from_reopened(spawn: Spawn, tmp_path: object) -> None:
    path = os.path.join(str(tmp_path), "f")
    with open(path, "w") as f:
        f.write("x")
    inherited = os.open(path, os.O_RDONLY)
    try:

        def reopen() -> int:
            return os.open(path, os.O_RDONLY)

        child = spawn(reopen)
        me = os.getpid()
        s = shared_files(me, child.pid)
        # Brute force: every pair of fds the kernel says are one description.
        pairs = {
            (f1, f2)
            for f1 in open_fds(me)
            for f2 in open_fds(child.pid)
            if baseline.kcmp(me, child.pid, KcmpType.FILE, f1, f2) == 0
        }
        got = {(f1, f2) for a, b in s.shared for f1 in a for f2 in b}
        assert got == pairs
        assert any(inherited in a for a, _ in s.shared)
        assert not any(child.data in b for _, b in s.shared)
        # This process holds the file only through the shared description: the child's
        # own open is no separate open on both sides, so the file is in no pair (the
        # ends of the spawn helper's pipes are: one inode, a description on each side).
        assert not any(inherited in a or child.data in b for a, b in s.reopened), s.reopened
        assert all(a and b for a, b in s.reopened), s.reopened
        assert not s.same_fd_table
        d = json.loads(json.dumps(s.to_dict()))
        assert d["schema_version"] == 2 and d["pid1"] == me
        # With an open of its own here too, the file is: those two fds, none shared.
        mine = os.open(path, os.O_RDONLY)
        try:
            again = shared_files(me, child.pid)
        finally:
            os.close(mine)
        assert again.shared == s.shared
        assert ((mine,), (child.data,)) in again.reopened, again.reopened
        assert len(again.reopened) == len(s.reopened) + 1
        swapped = shared_files(child.pid, me)
        assert sorted(swapped.reopened) == sorted((b, a) for a, b in s.reopened)
        assert sorted(swapped.shared) == sorted((b, a) for a, b in s.shared)
    finally:
        os.close(inherited)


def test_shared_files_reopened_omits_a_side_holding_only_the_shared_description(
    spawn: Spawn, tmp_path: object
) -> None:
    """The parent opens a file and forks; the parent opens it again. The child holds
    the file only through the inherited description: no reopened pair, either order."""
    me = os.getpid()
    with reopened_after_fork(spawn, str(tmp_path)) as (child, inherited, again):
        forward = shared_files(me, child)
        backward = shared_files(child, me)
    assert ((inherited,), (inherited,)) in forward.shared
    assert ((inherited,), (inherited,)) in backward.shared
    assert not any(again in a for a, _ in forward.shared)
    # Only the spawn helper's pipes, whose two ends are one inode, are in a pair.
    assert not any(again in a or inherited in a for a, _ in forward.reopened)
    assert not any(again in b or inherited in b for _, b in backward.reopened)
    assert all(a and b for a, b in (*forward.reopened, *backward.reopened))
    assert sorted(backward.reopened) == sorted((b, a) for a, b in forward.reopened)


def test_shared_files_with_itself_is_every_description() -> None:
    me = os.getpid()
    s = shared_files(me, me)
    assert s.same_fd_table and s.reopened == ()
    assert sorted(f for a, _ in s.shared for f in a) == open_fds(me)


def test_shared_files_of_a_gone_process_raises(spawn: Spawn) -> None:
    gone = spawn(expect_exit=None)
    gone.kill()
    e = raised(shared_files, os.getpid(), gone.pid)
    assert isinstance(e, ProcessLookupError)


# ---- epoll ----


def test_epoll_registrations_open_closed_reused_and_twice() -> None:
    me = os.getpid()
    ep = select.epoll()
    a, b = socket.socketpair()
    c, d = socket.socketpair()
    try:
        ep.register(a.fileno(), select.EPOLLIN)
        twice = os.dup(a.fileno())
        ep.register(twice, select.EPOLLOUT)
        closed, reused = os.dup(c.fileno()), os.dup(c.fileno())
        ep.register(closed, select.EPOLLIN)
        ep.register(reused, select.EPOLLIN)
        os.close(closed)
        os.dup2(b.fileno(), reused)  # the number now names another socket
        regs, calls = _epoll_targets(me, ep.fileno(), None)
        by_tfd = {t.tfd: t for t in regs}
        assert by_tfd[a.fileno()].status == "open"
        assert by_tfd[twice].status == "open"
        assert by_tfd[twice].events & select.EPOLLOUT
        assert {(m.pid, m.fd) for m in by_tfd[a.fileno()].holders} == {
            (me, a.fileno()),
            (me, twice),
        }
        assert by_tfd[reused].status == "reused"
        assert {(m.pid, m.fd) for m in by_tfd[reused].holders} == {(me, c.fileno())}
        assert by_tfd[closed].status == "closed"
        assert {(m.pid, m.fd) for m in by_tfd[closed].holders} == {(me, c.fileno())}
        assert calls <= sum(len(t.holders) for t in regs) + 4 * len(regs)
        for t in regs:
            assert json.loads(json.dumps(t.to_dict()))["tfd"] == t.tfd
        os.close(twice)
        os.close(reused)
    finally:
        for s in (a, b, c, d):
            s.close()
        ep.close()


def test_epoll_set_shared_with_a_child_and_held_only_there(spawn: Spawn) -> None:
    ep = select.epoll()
    a, b = socket.socketpair()
    try:
        ep.register(a.fileno(), select.EPOLLIN)
        tfd = a.fileno()

        def keep_a_copy() -> int:
            return os.dup(tfd)

        child = spawn(keep_a_copy)
        a.close()  # only the child holds the registered socket now
        me = os.getpid()
        [t] = epoll_targets(me, ep.fileno(), [child.pid])
        assert t.status == "closed"
        assert {(m.pid, m.fd) for m in t.holders} == {(child.pid, tfd), (child.pid, child.data)}
        [t] = epoll_targets(child.pid, ep.fileno())  # the child's inherited set
        assert t.status == "open"
    finally:
        b.close()
        ep.close()


def test_epoll_errors(pipe: tuple[int, int]) -> None:
    me = os.getpid()
    ep = select.epoll()
    try:
        assert epoll_targets(me, ep.fileno()) == []
    finally:
        ep.close()
    e = raised(epoll_targets, me, pipe[0])
    assert isinstance(e, OSError) and e.errno == errno.EINVAL
    assert str(e).endswith(f"fd {pipe[0]} of process {me} is not an epoll fd")
    e = raised(epoll_targets, me, 999_999)
    assert isinstance(e, OSError) and e.errno == errno.EBADF


def _children_alive(children: list[ChildProcess]) -> None:
    for c in children:
        assert c.status is None


# ---- kcmp blocked ----


def _same_inode(a: tuple[int, int], b: tuple[int, int]) -> bool:
    sa, sb = (os.stat(f"/proc/{p}/fd/{f}") for p, f in (a, b))
    return (sa.st_dev, sa.st_ino) == (sb.st_dev, sb.st_ino)


Undecided = tuple[tuple[int, int], ...]


def _holders_without_kcmp(
    target: tuple[int, int], pids: list[int], allow: bool
) -> tuple[list[tuple[int, int]], Undecided, bool]:
    disable_kcmp()
    h = holders(*target, pids, allow_pidfd_getfd=allow)
    return refs(h), h.undecided, h.complete


def test_holders_without_kcmp_are_exact_or_say_undecided(
    spawn: Spawn, pipe: tuple[int, int]
) -> None:
    _, w = pipe
    child = spawn()
    me = os.getpid()
    pids = [me, child.pid]
    want = holders_truth((me, w), pids)
    found, undecided, complete = run_in_child(_holders_without_kcmp, (me, w), pids, True).unwrap()
    assert (found, undecided, complete) == (want, (), True)
    found, undecided, complete = run_in_child(_holders_without_kcmp, (me, w), pids, False).unwrap()
    # Without pidfd_getfd the child's fds on the pipe's inode cannot be compared: they
    # are listed as undecided, never guessed, and the answer says it is incomplete.
    assert set(found) <= set(want) and not complete
    assert set(want) - set(found) <= set(undecided)
    on_inode = {(p, f) for p in pids for f in open_fds(p) if _same_inode((p, f), (me, w))}
    assert set(undecided) <= on_inode, undecided


def _epoll_without_kcmp() -> None:
    disable_kcmp()
    ep = select.epoll()
    try:
        epoll_targets(os.getpid(), ep.fileno())
    finally:
        ep.close()


def test_epoll_targets_without_kcmp_says_why() -> None:
    e = run_in_child(_epoll_without_kcmp).raised()
    assert isinstance(e, KcmpUnavailableError)
    assert "disabled by configuration" in e.reason


# ---- deaths ----


def _many_dups(fd: int) -> int:
    for i in range(2000):
        os.dup2(fd, 100 + i)
    return 2000


def test_a_holder_killed_during_the_search_is_skipped_never_half_read(
    spawn: Spawn, pipe: tuple[int, int]
) -> None:
    """Kills at a spread of times: the child's holders are all there (killed after the
    search) or it is skipped as gone; never a part of its 2,000 holders."""
    _, w = pipe
    me = os.getpid()
    outcomes: dict[str, int] = {}
    for round_ in range(40):
        child = spawn(lambda: _many_dups(w), expect_exit=None)
        delay = (round_ % 10) * 0.0005
        killer = threading.Timer(delay, os.kill, (child.pid, 9))
        killer.start()
        h = holders(me, w, [me, child.pid])
        killer.join()
        theirs = [r for r in refs(h) if r[0] == child.pid]
        reasons = {s.pid: s.reason for s in h.skipped}
        if child.pid in reasons:
            assert theirs == [] and reasons[child.pid] in ("exited", "zombie", "no such process")
            kind = reasons[child.pid]
        else:
            assert len(theirs) == 2001, len(theirs)  # fd w itself and the 2,000 dups
            kind = "whole"
        outcomes[kind] = outcomes.get(kind, 0) + 1
        child.kill()
    print("holders with a holder killed at a spread of times:", outcomes)
    assert sum(outcomes.values()) == 40, outcomes
