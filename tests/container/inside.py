"""What runs inside the containers of `make container-test` (scripts/container-test.sh).

Standard library and the installed kcmp_rs only: it runs under the rootfs's own Python
from a venv holding the wheel. The host-side driver (``scenarios.py``) compares what it
prints with what kcmp says on the host about the same processes.

- ``family [--listen SOCKET]``: builds a family of fds (a pipe and dups of both ends,
  a file opened twice plus a dup, /dev/null twice, a Unix socket pair, a forked child
  that inherits all of them, opens the file again and passes another file back over
  SCM_RIGHTS), asks kcmp_rs about them from inside the container, prints one JSON
  report, and holds everything until stdin reaches EOF; then it releases and reaps the
  child. With ``--listen``, it first takes one fd over a Unix socket at SOCKET (from a
  process of the host) and keeps it, so the child inherits it too.
- ``ask PID FD``: asks about process PID (root, in this container) as whatever user
  this runs as, and prints each call's outcome as JSON.

Each answer is ``{"ok": value}`` or ``{"error": {...}}`` with the exception's class,
errno, message and attributes: the driver checks them, this side decides nothing.
"""

from __future__ import annotations

import dataclasses
import json
import os
import socket
import sys
import tempfile
from collections.abc import Callable
from typing import Any

import kcmp_rs
from kcmp_rs import KcmpType, _native

Outcome = dict[str, Any]

# How long the family waits for the host's fd: the driver connects within seconds.
ACCEPT_TIMEOUT = 120.0


def outcome(call: Callable[..., Any], *args: Any, **kwargs: Any) -> Outcome:
    try:
        return {"ok": call(*args, **kwargs)}
    except OSError as e:
        return {
            "error": {
                "class": type(e).__name__,
                "errno": e.errno,
                "message": str(e),
                "pid": getattr(e, "pid", None),
                "fd": getattr(e, "fd", None),
                "reason": getattr(e, "reason", None),
                "undecided": [list(r) for r in getattr(e, "undecided", ())],
                "permission_error": isinstance(e, PermissionError),
                "kcmp_error": isinstance(e, kcmp_rs.KcmpError),
            }
        }


def own_fds() -> list[int]:
    """This process's open fds; the one os.listdir used is closed by now, so left out."""
    listed = [int(name) for name in os.listdir("/proc/self/fd")]
    still_open = []
    for fd in listed:
        try:
            os.fstat(fd)
        except OSError:
            continue
        still_open.append(fd)
    return sorted(still_open)


def support() -> list[Any]:
    s = kcmp_rs.support()
    return [s.kcmp, s.dupfd_query, s.pidfd_getfd, s.reason]


def receive_from_host(path: str) -> int:
    """Takes one fd over a Unix socket at ``path`` from the host's helper."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as listener:
        listener.bind(path)
        listener.listen(1)
        print(json.dumps({"listening": path}), flush=True)
        listener.settimeout(ACCEPT_TIMEOUT)
        conn, _ = listener.accept()
        with conn:
            conn.settimeout(ACCEPT_TIMEOUT)
            _, fds, _, _ = socket.recv_fds(conn, 16, 1)
    os.unlink(path)
    if len(fds) != 1:
        raise SystemExit(f"expected one fd from the host, got {fds}")
    return fds[0]


def read_line(sock: socket.socket) -> bytes:
    data = b""
    while not data.endswith(b"\n"):
        chunk = sock.recv(65536)
        if not chunk:
            raise SystemExit("the child closed its socket before reporting")
        data += chunk
    return data


def child_side(sock: socket.socket, path_a: str, path_b: str, fa1: int, fa3: int) -> None:
    """The forked child: passes a file of its own to the parent, opens the parent's
    file again, reports its own answers, then waits for the parent to let it go."""
    me = os.getpid()
    fb = os.open(path_b, os.O_RDWR | os.O_CREAT, 0o600)
    socket.send_fds(sock, [b"F"], [fb])
    fa_child = os.open(path_a, os.O_RDONLY)
    fds = own_fds()
    report = {
        "fds": fds,
        "roles": {"passed": fb, "a_child": fa_child},
        "support": support(),
        "classify_fds": outcome(kcmp_rs.classify_fds, me, fds),
        "inherited_dup": outcome(kcmp_rs.same_file, me, fa1, me, fa3),
    }
    sock.sendall(json.dumps(report).encode() + b"\n")
    while sock.recv(1):
        pass


def start_child(path_a: str, path_b: str, fa1: int, fa3: int) -> tuple[int, socket.socket]:
    parent_end, child_end = socket.socketpair()
    pid = os.fork()
    if pid == 0:
        status = 1
        try:
            parent_end.close()
            child_side(child_end, path_a, path_b, fa1, fa3)
            status = 0
        finally:
            os._exit(status)
    child_end.close()
    return pid, parent_end


def task_answers(me: int, child: int) -> dict[str, Outcome]:
    """The calls that compare tasks or need the kernel's order: kcmp or nothing."""
    return {
        "kcmp_vm": outcome(kcmp_rs.kcmp, me, child, KcmpType.VM),
        "same_vm": outcome(kcmp_rs.same_vm, me, child),
        "same_files": outcome(kcmp_rs.same_files, me, child),
        "same_fs": outcome(kcmp_rs.same_fs, me, child),
        "sharing": outcome(lambda: dataclasses.astuple(kcmp_rs.sharing(me, child))),
        "classify_tasks": outcome(kcmp_rs.classify_tasks, [me, child], KcmpType.FILES),
    }


def file_answers(me: int, fds: list[int], child: int, child_fds: list[int]) -> dict[str, Any]:
    refs = [(me, fd) for fd in fds] + [(child, fd) for fd in child_fds]
    return {
        "same_file": [
            [a, b, outcome(kcmp_rs.same_file, me, a, me, b)]
            for i, a in enumerate(fds)
            for b in fds[i + 1 :]
        ],
        "classify_fds": outcome(kcmp_rs.classify_fds, me, fds),
        "classify_fds_kernel": outcome(kcmp_rs.classify_fds, me, fds, order="kernel"),
        "classify_files_own": outcome(kcmp_rs.classify_files, [(me, fd) for fd in fds]),
        "classify_files_all": outcome(kcmp_rs.classify_files, refs),
        "classify_files_partial": outcome(_native.classify_files_partial, refs),
        "classify_files_getfd": outcome(kcmp_rs.classify_files, refs, allow_pidfd_getfd=True),
    }


def family(listen: str | None) -> None:
    me = os.getpid()
    host_fd = receive_from_host(listen) if listen else None
    r, w = os.pipe()
    r2, w2 = os.dup(r), os.dup(w)
    workdir = tempfile.mkdtemp(prefix="kcmp-ct-")
    path_a, path_b = os.path.join(workdir, "a"), os.path.join(workdir, "b")
    fa1 = os.open(path_a, os.O_RDWR | os.O_CREAT, 0o600)
    fa2 = os.open(path_a, os.O_RDONLY)
    fa3 = os.dup(fa1)
    null1 = os.open(os.devnull, os.O_RDONLY)
    null2 = os.open(os.devnull, os.O_RDONLY)
    child, sock = start_child(path_a, path_b, fa1, fa3)
    _, received, _, _ = socket.recv_fds(sock, 1, 1)
    child_report = json.loads(read_line(sock))
    fds = own_fds()
    roles = {
        "pipe_r": r,
        "pipe_r_dup": r2,
        "pipe_w": w,
        "pipe_w_dup": w2,
        "a_rw": fa1,
        "a_ro": fa2,
        "a_rw_dup": fa3,
        "null1": null1,
        "null2": null2,
        "received": received[0],
        "socket": sock.fileno(),
    }
    if host_fd is not None:
        roles["from_host"] = host_fd
    report = {
        "pid": me,
        "child": child,
        "uid": os.getuid(),
        "fds": fds,
        "roles": roles,
        "support": support(),
        "answers": file_answers(me, fds, child, child_report["fds"]),
        "tasks": task_answers(me, child),
        "child_report": child_report,
    }
    print(json.dumps(report), flush=True)
    sys.stdin.read()  # held until the driver closes our stdin
    sock.close()
    _, status = os.waitpid(child, 0)
    os.unlink(path_a)
    os.unlink(path_b)
    os.rmdir(workdir)
    if status != 0:
        raise SystemExit(f"the child exited with status {status:#x}")


def ask(pid: int, fd: int) -> None:
    """As a non-root user: every question about root's process ``pid``."""
    me = os.getpid()
    answers = {
        "uid": [os.getuid(), os.geteuid()],
        "me": me,
        "support": support(),
        "same_file": outcome(kcmp_rs.same_file, me, 0, pid, fd),
        "same_file_root_first": outcome(kcmp_rs.same_file, pid, fd, me, 0),
        "kcmp_vm": outcome(kcmp_rs.kcmp, me, pid, KcmpType.VM),
        "same_fs": outcome(kcmp_rs.same_fs, pid, pid),
        "sharing": outcome(lambda: dataclasses.astuple(kcmp_rs.sharing(me, pid))),
        "open_fds": outcome(kcmp_rs.open_fds, pid),
        "classify_fds": outcome(kcmp_rs.classify_fds, pid),
        "classify_files": outcome(kcmp_rs.classify_files, [(me, 0), (pid, fd)]),
    }
    print(json.dumps(answers), flush=True)


def main(argv: list[str]) -> None:
    if argv == ["family"]:
        family(None)
    elif argv[:2] == ["family", "--listen"] and len(argv) == 3:
        family(argv[2])
    elif argv[:1] == ["ask"] and len(argv) == 3:
        ask(int(argv[1]), int(argv[2]))
    else:
        raise SystemExit("usage: inside.py family [--listen SOCKET] | ask PID FD")


if __name__ == "__main__":
    main(sys.argv[1:])
