"""``scan(ipc=True)`` and ``kcmp-rs scan --ipc``: the channels between processes (pipes,
FIFOs, Unix socket pairs, ptys), each end as the scan's descriptions on it, checked
against how the family was built; the JSON the core writes equals the Python
document byte for byte; the picture; and what happens where sock_diag is refused."""

from __future__ import annotations

import errno
import json
import os
import pty
import socket
import subprocess
import sys
from functools import partial
from pathlib import Path
from typing import Any

import kcmp_rs
import pytest
from _checks import needs_dot, needs_kcmp, needs_seccomp
from _helpers import Spawn
from _scan_helpers import run_cli
from _seccomp import install_filter
from kcmp_rs import Scan
from kcmp_rs.cli._render import json_lines

Ref = tuple[int, int]


def channels_of(found: Scan) -> list[tuple[str, list[tuple[str, list[list[Ref]]]]]]:
    """Each channel as (kind, [(side, [members of each description])])."""
    assert found.channels is not None
    return [
        (
            c.kind,
            [
                (side, [[(m.pid, m.fd) for m in found.descriptions[i].members] for i in on])
                for side, on in c.ends
            ],
        )
        for c in found.channels
    ]


def family(spawn: Spawn, tmp: Path) -> dict[str, Any]:
    """Two children: a pipe from one to the other, a socketpair between them, a pty
    (master in the first, slave in the second), a FIFO the first opened O_RDWR and the
    second O_WRONLY; and a pipe the first holds both ends of (no channel)."""
    fifo = tmp / "fifo"
    os.mkfifo(fifo)
    r, w = os.pipe()
    a, b = socket.socketpair()
    master, slave = pty.openpty()
    slave_name = os.ttyname(slave)
    os.close(slave)

    def first_setup() -> dict[str, int]:
        for fd in (r, b.fileno()):
            os.close(fd)
        inner_r, inner_w = os.pipe()
        return {"rw": os.open(fifo, os.O_RDWR), "inner_r": inner_r, "inner_w": inner_w}

    def second_setup() -> dict[str, int]:
        for fd in (w, a.fileno(), master):
            os.close(fd)
        return {
            "writer": os.open(fifo, os.O_WRONLY | os.O_NONBLOCK),
            "slave": os.open(slave_name, os.O_RDWR | os.O_NOCTTY),
        }

    fds = {"r": r, "w": w, "a": a.fileno(), "b": b.fileno(), "master": master}
    try:
        first = spawn(first_setup)
        second = spawn(second_setup)
    finally:
        for fd in (r, w, master):
            os.close(fd)
        a.close()
        b.close()
    return {"first": first, "second": second, "fds": fds}


@needs_kcmp
def test_the_channels_are_the_ones_built(spawn: Spawn, tmp_path: Path) -> None:
    f = family(spawn, tmp_path)
    p1, p2, fds = f["first"].pid, f["second"].pid, f["fds"]
    found = kcmp_rs.scan([p1, p2], ipc=True)
    assert found.channel_notes == ()
    got = sorted(channels_of(found))
    rw = (p1, f["first"].data["rw"])
    slave = f["second"].data["slave"]
    assert got == sorted(
        [
            ("pipe", [("read", [[(p2, fds["r"])]]), ("write", [[(p1, fds["w"])]])]),
            ("unix", [("socket", [[(p1, fds["a"])]]), ("socket", [[(p2, fds["b"])]])]),
            (
                "pty",
                [
                    ("master", [[(p1, fds["master"])]]),
                    ("slave", [[(p2, slave)]]),
                ],
            ),
            ("fifo", [("read", [[rw]]), ("write", [[rw], [(p2, f["second"].data["writer"])]])]),
        ]
    )
    # The first child's own pipe connects nothing; its ends are reported only with --all.
    inner = {(p1, f["first"].data["inner_r"]), (p1, f["first"].data["inner_w"])}
    reported = {(m.pid, m.fd) for d in found.descriptions for m in d.members}
    assert not inner & reported
    everything = kcmp_rs.scan([p1, p2], ipc=True, include_unshared=True)
    assert inner <= {(m.pid, m.fd) for d in everything.descriptions for m in d.members}
    assert sorted(channels_of(everything)) == got
    assert kcmp_rs.scan([p1, p2]).channels is None  # not asked: not in the document
    assert "channels" not in kcmp_rs.scan([p1, p2]).to_dict()


@needs_kcmp
def test_the_core_writes_the_python_document_byte_for_byte(spawn: Spawn, tmp_path: Path) -> None:
    f = family(spawn, tmp_path)
    pids = f"{f['first'].pid},{f['second'].pid}"
    document = run_cli("scan", "-p", pids, "--ipc", "-J")
    lines = run_cli("scan", "-p", pids, "--ipc", "-j")
    assert (document.returncode, lines.returncode) == (0, 0), document.stderr
    found = kcmp_rs.scan([f["first"].pid, f["second"].pid], ipc=True)
    doc = found.to_dict()
    expected = json.dumps(doc, ensure_ascii=False) + "\n"
    assert document.stdout.decode() == expected
    assert len(doc["channels"]) == 4 and doc["channel_notes"] == []
    records = {"descriptions": "description", "channels": "channel"}
    assert lines.stdout.decode() == json_lines(doc, "scan", records | _LISTS)


_LISTS = {"skipped": "skipped", "undecided": "undecided", "fd_table_shared": "fd_table_shared"}


@needs_kcmp
def test_the_table_lists_each_channel_with_its_ends(spawn: Spawn, tmp_path: Path) -> None:
    f = family(spawn, tmp_path)
    p1, p2 = f["first"].pid, f["second"].pid
    done = run_cli("scan", "-p", f"{p1},{p2}", "--ipc")
    assert (done.returncode, done.stderr) == (0, b"")
    out = done.stdout.decode()
    head, _, table = out.partition("\nChannels between processes: 4\n")
    assert head and table.startswith("CHANNEL  KIND  SIDE    MODE  HOLDERS")
    kinds = [line.split()[1] for line in table.splitlines()[1:] if line[:1].isdigit()]
    assert sorted(kinds) == ["fifo", "pipe", "pty", "unix"]
    assert max(map(len, out.splitlines())) <= 120


@needs_kcmp
@needs_dot
def test_the_picture_draws_each_channel_between_its_ends(spawn: Spawn, tmp_path: Path) -> None:
    f = family(spawn, tmp_path)
    done = run_cli("scan", "-p", f"{f['first'].pid},{f['second'].pid}", "--ipc", "--dot")
    assert done.returncode == 0, done.stderr
    dot = done.stdout.decode()
    edges = [line for line in dot.splitlines() if 'color="#3060c0"' in line]
    labels = sorted(line.split('label="')[1].split('"')[0] for line in edges)
    # pipe: write to read; fifo: the writer to the O_RDWR description (not to itself).
    assert labels == ["fifo", "pipe", "pty", "unix"]
    rendered = subprocess.run(["dot", "-Tsvg"], input=done.stdout, capture_output=True, check=False)
    assert rendered.returncode == 0 and b"<svg" in rendered.stdout, rendered.stderr


def test_ipc_is_a_flag_and_takes_no_across() -> None:
    with pytest.raises(TypeError, match="ipc must be a bool, not int"):
        kcmp_rs.scan([os.getpid()], ipc=1)  # type: ignore[arg-type]
    done = run_cli("scan", "--ipc", "--across", "net", "-p", str(os.getpid()))
    assert done.returncode == 2
    assert b"--ipc lists channels of a whole scan: it takes no --across" in done.stderr


@needs_kcmp
@needs_seccomp
def test_where_sock_diag_is_refused_the_scan_says_so_status_4(spawn: Spawn, tmp_path: Path) -> None:
    f = family(spawn, tmp_path)
    refused = partial(install_filter, ("allow",), netlink_errno=errno.EPERM)
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "kcmp_rs",
            "scan",
            "-p",
            f"{f['first'].pid},{f['second'].pid}",
            "--ipc",
            "-J",
        ],
        capture_output=True,
        preexec_fn=refused,
        check=False,
    )
    assert done.returncode == 4
    assert done.stderr.decode() == (
        "kcmp-rs: incomplete channels: sock_diag is refused here (Operation not permitted): "
        "no Unix socket pair is listed\n"
    )
    doc = json.loads(done.stdout)
    assert sorted(c["kind"] for c in doc["channels"]) == ["fifo", "pipe", "pty"]
    assert doc["channel_notes"] == [
        "sock_diag is refused here (Operation not permitted): no Unix socket pair is listed"
    ]
