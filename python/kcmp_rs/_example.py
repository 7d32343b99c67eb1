"""The process family of ``kcmp-rs scan --example``: processes with known fd sharing.

``build_family(n_procs, fds_per_proc)`` starts ``n_procs`` processes. Each holds
exactly ``fds_per_proc`` fds (at least ``MIN_FDS``), and the builder records which
open file description each fd refers to (``Family.labels``: equal labels, same
description), so the sharing is known in advance:

- fds 0, 1, 2: one open of /dev/null per process, dup()ed (shared within it);
- ``lifeline``: the read end of a pipe inherited through fork by every process
  (shared by all); they exit when the builder closes the write end, so none outlives
  it;
- processes ``2k`` and ``2k+1`` form a pair (a last odd one has none): ``pair:k``, a
  file opened before forking both (inherited through fork); ``passed:k``, a file
  ``2k`` opened and sent to ``2k+1`` over a Unix socket with SCM_RIGHTS (one
  description in two processes); ``sock0:k`` / ``sock1:k``, the ends of that socket
  pair, one in each; ``pipe-r:k`` / ``pipe-w:k``, the ends of a pipe, the read end in
  ``2k`` and the write end in ``2k+1``: two descriptions that must never be grouped
  together;
- the remaining fds: separate opens of one file per process, modes ``OPEN_MODES`` in
  turn, every fourth one a dup() of the one before (shared within the process).

How it scales (1000 x 200 builds in seconds, which the benchmarks use): the processes
are forked by a small helper process (the "zygote", forked first, while the caller is
still small), not by the caller, whose memory grows as it records the truth and would
make every later fork slower; the zygote also reaps them, so a killed member
disappears from /proc at once. The members inherit nothing else: each closes every
other fd right after the fork, and raises its own RLIMIT_NOFILE soft limit only if
``fds_per_proc`` needs it. The caller and the zygote hold a few fds each, whatever
``n_procs``.

Only ``kcmp-rs scan --example`` imports this module, when it runs (it forks; no other
command needs it). The tests and benchmarks build on it in ``tests/_family.py``, which
adds what only they use (hostile file names, the truth per fd, killing a member).
"""

from __future__ import annotations

import collections
import contextlib
import ctypes
import fcntl
import gc
import json
import os
import resource
import shutil
import signal
import socket
import tempfile
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, NoReturn

from kcmp_rs import _native

__all__ = ["COMMAND", "MIN_FDS", "OPEN_MODES", "Family", "build_family"]

Ref = tuple[int, int]

#: The fewest fds a member holds: 0-2, lifeline, pair, passed, socket end, pipe end.
MIN_FDS = 8

#: The members' command name (comm) unless the builder is given another.
COMMAND = b"kcmp-family"

#: The access modes of a member's separate opens (``private:INDEX:N``): ``N % 3``.
OPEN_MODES = (os.O_RDONLY, os.O_WRONLY, os.O_RDWR)

#: How many members may be setting up at once (the zygote holds a pipe for each).
_IN_FLIGHT = 16


@dataclass(frozen=True, eq=False)
class Family:
    """The processes of ``build_family`` and the truth about their fds.

    ``labels[(pid, fd)]`` names the open file description of each fd (equal labels:
    the same description). ``command`` is the members' command name (comm); every file
    name in ``directory`` starts with ``prefix``.
    """

    pids: tuple[int, ...]
    directory: str
    command: str
    labels: Mapping[Ref, str]
    prefix: bytes = b""

    @property
    def groups(self) -> list[tuple[Ref, ...]]:
        """The descriptions held by two fds or more: each ascending, ordered by their
        smallest member (as ``classify_files`` orders them)."""
        by_label: dict[str, list[Ref]] = {}
        for ref, label in self.labels.items():
            by_label.setdefault(label, []).append(ref)
        return sorted(tuple(sorted(refs)) for refs in by_label.values() if len(refs) > 1)


#: prctl(2) option: set the calling thread's name (include/uapi/linux/prctl.h).
_PR_SET_NAME = 15


def _keep_only(keep: dict[str, int]) -> dict[str, int]:
    """Closes every fd but those in ``keep``, moves them to 3 and above, and points
    0, 1 and 2 at one open of /dev/null. Returns ``keep`` with the new numbers."""
    for fd in _native.open_fds(os.getpid()):
        if fd not in keep.values():
            with contextlib.suppress(OSError):
                os.close(fd)
    moved = {}
    for role, fd in keep.items():
        if fd < 3:
            moved[role] = fcntl.fcntl(fd, fcntl.F_DUPFD, 3)
            os.close(fd)
        else:
            moved[role] = fd
    null = os.open(os.devnull, os.O_RDWR)  # 0, as every lower fd is closed
    for std in (0, 1, 2):
        if std != null:
            os.dup2(null, std)
    if null > 2:
        os.close(null)
    return moved


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _read_all(fd: int) -> bytes:
    chunks: list[bytes] = []
    while True:
        chunk = os.read(fd, 65536)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


@dataclass(frozen=True)
class _Plan:
    n_procs: int
    fds_per_proc: int
    directory: bytes
    prefix: bytes
    command: bytes


def _member(index: int, plan: _Plan, inherited: dict[str, int], report_w: int) -> NoReturn:
    """A member's life: arrange its fds, report them, wait for the lifeline to close."""
    code = 1
    try:
        inherited = _keep_only({**inherited, "report": report_w})
        report_w = inherited.pop("report")
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if plan.fds_per_proc + 8 > soft:
            want = plan.fds_per_proc + 8
            resource.setrlimit(
                resource.RLIMIT_NOFILE,
                (want if hard == resource.RLIM_INFINITY else min(want, hard), hard),
            )
        held = [(std, f"devnull:{index}") for std in (0, 1, 2)]  # (fd, label)
        held.append((inherited["lifeline"], "lifeline"))
        k = index // 2
        if "pair" in inherited:
            held.append((inherited["pair"], f"pair:{k}"))
            sock = socket.socket(fileno=inherited["sock"])
            try:
                if index % 2 == 0:
                    name = plan.prefix + b"passed-%d" % k
                    path = os.path.join(plan.directory, name)
                    passed = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
                    socket.send_fds(sock, [b"x"], [passed])
                else:
                    _, received, _, _ = socket.recv_fds(sock, 1, 1)
                    (passed,) = received
            finally:
                sock.detach()
            held.append((passed, f"passed:{k}"))
            held.append((inherited["sock"], f"sock{index % 2}:{k}"))
            held.append((inherited["pipe"], f"pipe-{'r' if index % 2 == 0 else 'w'}:{k}"))
        private = os.path.join(plan.directory, plan.prefix + b"private-%d" % index)
        os.close(os.open(private, os.O_RDWR | os.O_CREAT, 0o600))
        n = 0
        while len(held) < plan.fds_per_proc:
            if n % 4 == 3:
                held.append((os.dup(held[-1][0]), held[-1][1]))
            else:
                held.append((os.open(private, OPEN_MODES[n % 3]), f"private:{index}:{n}"))
            n += 1
        _set_command(plan.command)
        _write_all(report_w, json.dumps(held).encode())
        os.close(report_w)
        while os.read(inherited["lifeline"], 1):
            pass
        code = 0
    except BaseException as exc:  # tell the zygote, which tells the builder
        with contextlib.suppress(BaseException):
            _write_all(report_w, json.dumps({"error": repr(exc)}).encode())
    os._exit(code)


def _reap(live: set[int]) -> None:
    """Reaps the members that have died, without blocking."""
    while live:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            live.clear()
            return
        if pid == 0:
            return
        live.discard(pid)


def _kill(live: set[int]) -> None:
    for pid in live:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)


def _forward(pid: int, report_r: int, feed_w: int) -> None:
    """Passes a member's report on to the builder, once the member has sent it all."""
    try:
        report = _read_all(report_r)
    finally:
        os.close(report_r)
    _write_all(feed_w, b'{"pid": %d, "report": %s}\n' % (pid, report or b"null"))
    if not report.startswith(b"["):
        raise RuntimeError(f"member {pid} failed")


def _pair_fds(plan: _Plan, k: int) -> dict[str, int]:
    """What pair ``k`` inherits: one open file, a socket pair and a pipe."""
    pair = os.path.join(plan.directory, plan.prefix + b"pair-%d" % k)
    carried = {"pair": os.open(pair, os.O_RDWR | os.O_CREAT, 0o600)}
    carried["sock0"], carried["sock1"] = (s.detach() for s in socket.socketpair())
    carried["pipe-r"], carried["pipe-w"] = os.pipe()
    return carried


def _inherited(index: int, lifeline_r: int, carried: dict[str, int]) -> dict[str, int]:
    """The fds member ``index`` keeps: the lifeline, and its side of its pair's fds."""
    inherited = {"lifeline": lifeline_r}
    if carried:
        first = index % 2 == 0
        inherited["pair"] = carried["pair"]
        inherited["sock"] = carried["sock0" if first else "sock1"]
        inherited["pipe"] = carried["pipe-r" if first else "pipe-w"]
    return inherited


def _start_members(plan: _Plan, lifeline_r: int, feed_w: int, live: set[int]) -> None:
    """Forks the members (a few setting up at a time, each added to ``live``) and
    forwards each report to the builder as a JSON line, in order, then "done"."""
    carried: dict[str, int] = {}  # what the current pair inherits
    in_flight: collections.deque[tuple[int, int]] = collections.deque()  # (pid, report_r)
    for index in range(plan.n_procs):
        if index % 2 == 0 and index + 1 < plan.n_procs:
            carried = _pair_fds(plan, index // 2)
        inherited = _inherited(index, lifeline_r, carried)
        report_r, report_w = os.pipe()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - a member never returns
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM, signal.SIGCHLD})
            _member(index, plan, inherited, report_w)
        live.add(pid)
        os.close(report_w)
        in_flight.append((pid, report_r))
        if len(in_flight) >= _IN_FLIGHT:
            _forward(*in_flight.popleft(), feed_w)
        if carried and index % 2 == 1:
            for fd in carried.values():
                os.close(fd)
            carried = {}
    while in_flight:
        _forward(*in_flight.popleft(), feed_w)
    _write_all(feed_w, b'{"done": true}\n')
    os.close(feed_w)


def _zygote(plan: _Plan, lifeline_r: int, feed_w: int) -> NoReturn:
    """Starts the members (``_start_members``), then reaps them as they die. On SIGTERM
    it kills every live member (its own children: their pids cannot have been reused)."""
    code = 1
    live: set[int] = set()
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGCHLD})
    try:
        kept = _keep_only({"lifeline": lifeline_r, "feed": feed_w})
        lifeline_r, feed_w = kept["lifeline"], kept["feed"]
        _start_members(plan, lifeline_r, feed_w, live)
        code = 0
    except BaseException as exc:
        with contextlib.suppress(BaseException):
            _write_all(feed_w, json.dumps({"error": repr(exc)}).encode() + b"\n")
        _kill(live)
    _reap(live)
    while live:
        if signal.sigwaitinfo({signal.SIGTERM, signal.SIGCHLD}).si_signo == signal.SIGTERM:
            _kill(live)
        _reap(live)
    os._exit(code)


def _set_command(name: bytes) -> None:
    """Sets this process's command name (comm), as prctl(PR_SET_NAME) does."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_NAME, ctypes.c_char_p(name), 0, 0, 0) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"prctl(PR_SET_NAME): {os.strerror(err)}")


def _fork() -> int:
    """``os.fork()``, quiet about other threads of the caller (Python 3.12+ warns that
    the child could deadlock on a lock one of them held): the zygote and the members
    only make system calls through modules already imported, taking no such lock."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", r".*fork\(\) may lead to deadlocks", DeprecationWarning)
        return os.fork()


def _lines(fd: int) -> Iterator[Any]:
    """The JSON lines the zygote sends, until it closes its end."""
    pending = b""
    while True:
        chunk = os.read(fd, 1 << 20)
        if not chunk:
            if pending.strip():
                yield json.loads(pending)
            return
        pending += chunk
        *lines, pending = pending.split(b"\n")
        for line in lines:
            yield json.loads(line)


def _collect(feed_r: int) -> tuple[list[int], dict[Ref, str]]:
    """The members' pids and the labels of their fds, as the zygote reports them; each
    member's /proc/PID/fd must list exactly the fds it reported."""
    pids: list[int] = []
    labels: dict[Ref, str] = {}
    for message in _lines(feed_r):
        if "error" in message:
            raise RuntimeError(f"building the process family failed: {message['error']}")
        if message.get("done"):
            return pids, labels
        pid, report = message["pid"], message["report"]
        if not isinstance(report, list):
            why = report["error"] if isinstance(report, dict) else "no report"
            raise RuntimeError(f"family member {len(pids)} (pid {pid}) failed: {why}")
        pids.append(pid)
        for fd, label in report:
            labels[(pid, fd)] = label
        listed = _native.open_fds(pid)
        if listed != sorted(fd for fd, _ in report):
            raise RuntimeError(f"family member {pid} holds {listed}, reported {report}")
    raise RuntimeError("the process family's zygote exited before finishing")


@contextlib.contextmanager
def build_family(
    n_procs: int = 4,
    fds_per_proc: int = MIN_FDS,
    *,
    prefix: bytes = b"",
    command: bytes = COMMAND,
) -> Iterator[Family]:
    """Starts a family of ``n_procs`` processes with known sharing (module docstring);
    yields a ``Family``; on exit kills and reaps them and removes their files.

    ``prefix``: the start of every file name. ``command``: the members' command name
    (comm: 15 bytes at most). RuntimeError if a member fails to set up or does not
    hold exactly the fds it reported. Call it from a single-threaded process (it
    forks).
    """
    if n_procs < 1:
        raise ValueError(f"n_procs must be at least 1, got {n_procs}")
    directory = tempfile.mkdtemp(prefix="kcmp-family-")
    plan = _Plan(
        n_procs=n_procs,
        fds_per_proc=max(fds_per_proc, MIN_FDS),
        directory=os.fsencode(directory),
        prefix=prefix,
        command=command[:15],
    )
    zygote = 0
    lifeline_r, lifeline_w = os.pipe()
    try:
        feed_r, feed_w = os.pipe()
        try:
            zygote = _fork()
            if zygote == 0:  # pragma: no cover - the zygote never returns
                gc.disable()  # no finalizer may close an fd number a member reuses
                _zygote(plan, lifeline_r, feed_w)
            os.close(feed_w)
            os.close(lifeline_r)
            lifeline_r = -1
            pids, labels = _collect(feed_r)
        finally:
            os.close(feed_r)
        yield Family(tuple(pids), directory, os.fsdecode(plan.command), labels, plan.prefix)
    finally:
        if lifeline_r >= 0:
            os.close(lifeline_r)
        os.close(lifeline_w)  # every member sees EOF and exits
        if zygote:
            with contextlib.suppress(ProcessLookupError):
                os.kill(zygote, signal.SIGTERM)  # and kills those that do not
            os.waitpid(zygote, 0)
        shutil.rmtree(directory, ignore_errors=True)
