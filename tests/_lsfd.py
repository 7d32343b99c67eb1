"""util-linux 2.41's lsfd, whose ENDPOINTS column the endpoint tests compare our answers
with: run from the Debian 13 chroot that ``scripts/setup-lsfd.sh`` (``make lsfd-root``)
caches, against this host's processes, by ``scripts/lsfd.sh`` (nothing stays mounted).

Always pass the pids of the test's own processes: lsfd then reads only those, and lists
as endpoints only fds of those processes.

ENDPOINTS, as measured with lsfd 2.41.5 on Linux 6.18 (NOTES in the lsfd-chroot branch):
one endpoint per line, ``PID,COMMAND,ASSOC`` followed, except for eventfds, by two mode
characters: ``[r-][w-]`` the endpoint fd's open mode (pipes, FIFOs, mqueues, ptys), or
``[r?-][w?-]`` the endpoint socket's shutdown state (Unix sockets). Which fds are listed:

- pipe, FIFO, mqueue, eventfd: every other fd on the same object, in any scanned
  process, the fd's own process and dups included, whatever their direction;
- Unix socket (stream, datagram, seqpacket, also across network namespaces): the fds
  of the peer socket, never other fds of the same socket; none for a listening socket
  nor for a connection not yet accepted;
- pty: a master lists every fd of its slave, a slave every fd of its master; masters
  do not list each other, nor slaves.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any, NamedTuple

import pytest

__all__ = [
    "SETUP_HINT",
    "Endpoint",
    "LsfdError",
    "endpoints_by_fd",
    "lsfd_root",
    "parse_endpoints",
    "require_lsfd",
    "run_lsfd",
]

REPO = Path(__file__).resolve().parent.parent
RUNNER = REPO / "scripts" / "lsfd.sh"
#: In the chroot, written last by setup-lsfd.sh: ``lsfd --version`` of the chroot.
STAMP = ".kcmp-rs-lsfd-version"
SETUP_HINT = "run scripts/setup-lsfd.sh (make lsfd-root)"
TIMEOUT = 60.0

Ref = tuple[int, int]


class LsfdError(RuntimeError):
    """lsfd (or the runner) failed; the message has its exit status and stderr."""


class Endpoint(NamedTuple):
    """One line of an ENDPOINTS cell."""

    pid: int
    command: str
    fd: int
    #: ``r-``, ``-w``, ``rw``, with ``?`` for an unknown socket state; None for eventfds.
    mode: str | None


def cache_dir() -> Path:
    """Where setup-lsfd.sh caches the chroot's directory (as the scripts compute it)."""
    env = os.environ.get("KCMP_RS_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "kcmp-rs"


def lsfd_root() -> Path | None:
    """The chroot with lsfd 2.41, or None if it was never (completely) built."""
    root = cache_dir() / "lsfd-trixie"
    return root if (root / STAMP).is_file() else None


def require_lsfd() -> Path:
    """The chroot, for a test that needs it: skips when not root (the runner needs
    root), fails when root and the chroot is missing (a setup step was left out)."""
    if os.geteuid() != 0:
        pytest.skip("needs root: scripts/lsfd.sh runs lsfd with unshare --mount and chroot")
    root = lsfd_root()
    if root is None:
        pytest.fail(f"no lsfd 2.41 chroot at {cache_dir() / 'lsfd-trixie'}: {SETUP_HINT}")
    return root


def run_lsfd(pids: list[int], columns: list[str]) -> list[dict[str, Any]]:
    """``lsfd -J -o COLUMNS -p PIDS``: its rows, keys the column names in lower case
    (``ENDPOINTS`` gives a list of lines). Raises LsfdError with lsfd's stderr."""
    if not pids or not columns:
        raise ValueError("run_lsfd needs at least one pid and one column")
    cmd = ["bash", str(RUNNER), "-J", "-o", ",".join(columns), "-p", ",".join(map(str, pids))]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT, check=False)
    except subprocess.TimeoutExpired as e:
        raise LsfdError(f"{' '.join(cmd)}: no answer within {TIMEOUT} s") from e
    if proc.returncode != 0:
        raise LsfdError(f"{' '.join(cmd)} exited {proc.returncode}: {proc.stderr.strip()}")
    if not proc.stdout.strip():  # no row at all: lsfd prints nothing
        return []
    try:
        rows = json.loads(proc.stdout)["lsfd"]
    except (ValueError, KeyError, TypeError) as e:
        raise LsfdError(f"{' '.join(cmd)}: not lsfd's JSON: {proc.stdout[:500]!r}") from e
    if not isinstance(rows, list):
        raise LsfdError(f"{' '.join(cmd)}: not lsfd's JSON: {proc.stdout[:500]!r}")
    return rows


# PID,COMMAND,FD[mode], then a newline or the end. COMMAND may hold commas, and newlines
# (lsfd prints it raw: JSON splits its line there), hence the lazy match up to the last
# ",FD[mode]" that ends a line.
_ENDPOINT = re.compile(r"(\d+),(.*?),(\d+)([-r?][-w?])?(?:\n|\Z)", re.DOTALL)


def parse_endpoints(cell: str | list[str] | None) -> list[Endpoint]:
    """An ENDPOINTS cell (the JSON list of lines, or the text) as Endpoints, in order."""
    text = "\n".join(cell) if isinstance(cell, list) else (cell or "")
    out: list[Endpoint] = []
    pos = 0
    while pos < len(text):
        m = _ENDPOINT.match(text, pos)
        if m is None:
            raise ValueError(f"unparsable ENDPOINTS {text!r} at {pos}")
        out.append(Endpoint(int(m[1]), m[2], int(m[3]), m[4]))
        pos = m.end()
    return out


def endpoints_by_fd(pids: list[int]) -> dict[Ref, list[Ref]]:
    """For every fd of ``pids`` (``ASSOC`` a number: not cwd, mem and such), the sorted
    (pid, fd) of its ENDPOINTS, [] when it has none."""
    out: dict[Ref, list[Ref]] = {}
    for row in run_lsfd(pids, ["PID", "ASSOC", "ENDPOINTS"]):
        assoc = str(row["assoc"])
        if not assoc.isdigit():
            continue
        ends = parse_endpoints(row.get("endpoints"))
        out[(int(row["pid"]), int(assoc))] = sorted({(e.pid, e.fd) for e in ends})
    return out
