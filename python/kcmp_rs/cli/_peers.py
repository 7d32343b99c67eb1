"""``kcmp-rs peers PID FD``: the other ends of the pipe, FIFO, Unix socket, pty or
eventfd that fd FD of PID is an end of (``kcmp_rs.endpoints()``)."""

from __future__ import annotations

import argparse
from collections.abc import Callable

from kcmp_rs._endpoints import Endpoints, endpoints
from kcmp_rs._errors import NotAChannelError
from kcmp_rs.cli._common import (
    CommandError,
    add_json_flags,
    allow_pidfd_getfd_flag,
    command,
    explain,
    given_pids,
    pid_arg,
    pids_flag,
    print_json,
    searched,
)
from kcmp_rs.cli._io import EXIT_INCOMPLETE, Parser, note, out
from kcmp_rs.cli._render import escape, render_table

__all__ = ["add_peers"]


def add_peers(sub: argparse._SubParsersAction[Parser], fd_arg: Callable[[str], int]) -> None:
    """Registers ``peers``."""
    peers = command(
        sub,
        "peers",
        help="the other ends of a pipe, FIFO, Unix socket, pty or eventfd",
        description="For fd FD of PID, one end of a pipe, FIFO, Unix socket, pty or "
        "eventfd: every end of that channel (read and write side; socket and peer; pty "
        "master and slave; one eventfd counter), each as its open file descriptions "
        "with the fds holding them. Fds in one row share one description; MODE is its "
        "access mode. The peer of a Unix socket is found with sock_diag in the socket's "
        "own network namespace. All processes by default; -p narrows the search.",
        example="  kcmp-rs peers 1234 3\n  kcmp-rs peers 1234 3 -p 1240,1241 -J",
    )
    peers.add_argument("pid", type=pid_arg, metavar="PID")
    peers.add_argument("fd", type=fd_arg, metavar="FD")
    pids_flag(peers, "search only these processes (repeatable)")
    add_json_flags(peers, "JSON Lines: one record per line (header, end, peer, ...)")
    allow_pidfd_getfd_flag(peers)
    peers.set_defaults(func=_cmd_peers, parser=peers)


def _cmd_peers(args: argparse.Namespace) -> int:
    pids = given_pids(args)
    try:
        found = endpoints(args.pid, args.fd, pids, allow_pidfd_getfd=args.allow_pidfd_getfd)
    except NotAChannelError as err:
        raise CommandError(str(err)) from None
    except OSError as err:
        raise CommandError(explain(err, args.pid)) from None
    records = {"ends": "end", "peers": "peer", "skipped": "skipped", "undecided": "undecided"}
    if not print_json(found.to_dict(), args, "peers", records):
        _print_peers(found)
    status = searched(found, args, pids is not None)
    if found.partial is not None:
        note(f"incomplete: {found.partial}")
        status = EXIT_INCOMPLETE
    return status


def _print_peers(found: Endpoints) -> None:
    where = f"the {' and '.join(found.sides)} side" if found.sides else "its description undecided"
    out(f"fd {found.fd} of process {found.pid}: {found.kind} {escape(found.target)}, {where}\n")
    # One row per description, each naming its side: a row's holders share it.
    rows = [
        [
            end.side,
            d.mode,
            "\n".join(f"{m.pid},{escape(m.command)},{m.fd}" for m in d.members),
            escape(d.target),
        ]
        for end in found.ends
        for d in end.descriptions
    ]
    out(render_table(["SIDE", "MODE", "HOLDERS", "TARGET"], rows))
    descriptions = sum(len(e.descriptions) for e in found.ends)
    procs = len({m.pid for e in found.ends for d in e.descriptions for m in d.members})
    out(
        f"{len(found.ends)} end{'s' * (len(found.ends) != 1)}, {descriptions} "
        f"description{'s' * (descriptions != 1)} in {procs} "
        f"process{'es' * (procs != 1)}; {len(found.peers)} peer fd{'s' * (len(found.peers) != 1)}; "
        f"{found.processes_read} process{'es' * (found.processes_read != 1)} read, "
        f"{len(found.skipped)} skipped\n"
    )
