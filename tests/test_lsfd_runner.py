"""The reference the endpoint tests compare with: util-linux 2.41's lsfd from the chroot
of ``make lsfd-root``, run by ``scripts/lsfd.sh`` against families built here, read by
``_lsfd``. Checks that its ENDPOINTS are what lsfd defines for pipes, socketpairs and
ptys, that its exit status comes through, and that nothing stays mounted.

Needs root and the chroot: skips when not root; as root, fails when the chroot is missing
(``make lsfd-root`` builds it). The parsing tests need neither.
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
import subprocess
from pathlib import Path

import pytest
from _helpers import spawned
from _lsfd import (
    RUNNER,
    SETUP_HINT,
    Endpoint,
    LsfdError,
    endpoints_by_fd,
    parse_endpoints,
    require_lsfd,
    run_lsfd,
)

Ref = tuple[int, int]


@pytest.fixture
def lsfd() -> Path:
    """The chroot (skip when not root, fail when root without it)."""
    return require_lsfd()


def _others(refs: set[Ref]) -> dict[Ref, list[Ref]]:
    """Each ref with every other ref of the set: lsfd's endpoints of a pipe."""
    return {ref: sorted(refs - {ref}) for ref in refs}


def _mounts_of(root: Path) -> list[str]:
    with open("/proc/self/mountinfo") as f:
        return [line for line in f if str(root) in line]


def test_pipe_endpoints_are_every_other_fd_on_the_pipe(lsfd: Path) -> None:
    """Parent and child each hold both ends, a second child only the read end, the
    parent a dup of the write end: every fd lists all the others, its own dups and the
    fds of its own direction included; each with its open mode."""
    me = os.getpid()
    r, w = os.pipe()
    try:
        with spawned() as both, spawned(lambda: os.close(w)) as reader:
            wd = os.dup(w)
            try:
                refs = {(me, r), (me, w), (me, wd), (both.pid, r), (both.pid, w), (reader.pid, r)}
                got = endpoints_by_fd([me, both.pid, reader.pid])
                assert {ref: got.get(ref) for ref in refs} == _others(refs)
                (row,) = (
                    row
                    for row in run_lsfd([me, both.pid], ["PID", "ASSOC", "ENDPOINTS"])
                    if (row["pid"], row["assoc"]) == (both.pid, str(r))
                )
                modes = {(e.pid, e.fd): e.mode for e in parse_endpoints(row["endpoints"])}
                assert modes == {(me, r): "r-", (me, w): "-w", (me, wd): "-w", (both.pid, w): "-w"}
            finally:
                os.close(wd)
    finally:
        os.close(r)
        os.close(w)


def test_socketpair_endpoints_are_the_peers_fds(lsfd: Path) -> None:
    """One end in the parent (and a dup of it), the other in a child: each fd lists the
    fds of the other end only, never the other fds of its own socket."""
    me = os.getpid()
    a, b = socket.socketpair()
    fa, fb = a.fileno(), b.fileno()
    try:
        with spawned(a.close) as child:
            b.close()
            ad = os.dup(fa)
            try:
                got = endpoints_by_fd([me, child.pid])
                assert {ref: got.get(ref) for ref in [(me, fa), (me, ad), (child.pid, fb)]} == {
                    (me, fa): [(child.pid, fb)],
                    (me, ad): [(child.pid, fb)],
                    (child.pid, fb): sorted([(me, fa), (me, ad)]),
                }
            finally:
                os.close(ad)
    finally:
        a.close()
        b.close()


def test_pty_endpoints_pair_masters_with_slaves(lsfd: Path) -> None:
    """The master in the parent and a child, the slave in a second child: each master
    lists the slave, the slave both masters, and the masters do not list each other."""
    me = os.getpid()
    m, s = os.openpty()
    try:
        with contextlib.ExitStack() as stack:
            try:
                master = stack.enter_context(spawned(lambda: os.close(s)))
                slave = stack.enter_context(spawned(lambda: os.close(m)))
            finally:
                os.close(s)  # the fd number stays the slave's in the second child
            got = endpoints_by_fd([me, master.pid, slave.pid])
            refs = [(me, m), (master.pid, m), (slave.pid, s)]
            assert {ref: got.get(ref) for ref in refs} == {
                (me, m): [(slave.pid, s)],
                (master.pid, m): [(slave.pid, s)],
                (slave.pid, s): sorted([(me, m), (master.pid, m)]),
            }
    finally:
        os.close(m)


def test_nothing_stays_mounted(lsfd: Path) -> None:
    """The runner's bind mount of /proc lives in lsfd's own mount namespace: none of the
    chroot's paths is a mount point here, before or after a run."""
    assert _mounts_of(lsfd) == []
    run_lsfd([os.getpid()], ["PID", "ASSOC"])
    assert _mounts_of(lsfd) == []
    assert os.listdir(lsfd / "proc") == []


def test_exit_status_and_stderr_come_through(lsfd: Path) -> None:
    proc = subprocess.run(
        ["bash", str(RUNNER), "--no-such-option"], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 1
    assert "unrecognized option" in proc.stderr
    with pytest.raises(LsfdError, match=r"exited 1: .*NO-SUCH-COLUMN"):
        run_lsfd([os.getpid()], ["NO-SUCH-COLUMN"])


def test_without_the_chroot_the_runner_says_how_to_build_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KCMP_RS_CACHE", str(tmp_path))
    with pytest.raises(LsfdError, match=r"exited 2: .*" + re.escape(SETUP_HINT)):
        run_lsfd([os.getpid()], ["PID"])


@pytest.mark.parametrize("euid", [0, 1000])
def test_require_lsfd_fails_as_root_and_skips_otherwise(
    euid: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without the chroot, a test that needs it fails as root (a setup step was left
    out), and skips when not root (the runner could not run anyway)."""
    monkeypatch.setenv("KCMP_RS_CACHE", str(tmp_path))
    monkeypatch.setattr(os, "geteuid", lambda: euid)
    if euid == 0:
        with pytest.raises(pytest.fail.Exception, match=re.escape(SETUP_HINT)):
            require_lsfd()
    else:
        with pytest.raises(pytest.skip.Exception, match=r"needs root"):
            require_lsfd()


# ---- parsing: cells as lsfd 2.41.5 printed them (NOTES in the lsfd-chroot branch) ----


def test_parse_pipe_cell() -> None:
    cell = ["17176,a-parent,4-w", "17176,a-parent,5-w", "17220,a-both,3r-"]
    assert parse_endpoints(cell) == [
        Endpoint(17176, "a-parent", 4, "-w"),
        Endpoint(17176, "a-parent", 5, "-w"),
        Endpoint(17220, "a-both", 3, "r-"),
    ]


def test_parse_eventfd_and_socket_cells() -> None:
    assert parse_endpoints(["17468,f-child,3"]) == [Endpoint(17468, "f-child", 3, None)]
    assert parse_endpoints(["22305,x,8-w", "1,y,9r?"]) == [
        Endpoint(22305, "x", 8, "-w"),
        Endpoint(1, "y", 9, "r?"),
    ]
    assert parse_endpoints([]) == []
    assert parse_endpoints(None) == []


def test_parse_commands_with_commas_and_newlines() -> None:
    """lsfd prints COMMAND raw: a newline in it splits the JSON list's line."""
    cell = ["22305,h,odd", "name,4rw", "7,a,5,b,6"]
    assert parse_endpoints(cell) == [
        Endpoint(22305, "h,odd\nname", 4, "rw"),
        Endpoint(7, "a,5,b", 6, None),
    ]
    with pytest.raises(ValueError, match="unparsable"):
        parse_endpoints(["not an endpoint"])
