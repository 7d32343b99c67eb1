"""``kcmp-rs scan --across KIND``: the boundary audit. Which open file descriptions are
held on both sides of a namespace or cgroup boundary, narrowed to one container
(``--inside``), less the crossings a rule expects (``--allow``).

``add_audit_flags`` puts the flags on the scan's parser, ``prepare_audit`` checks them
before the scan, ``print_audit`` filters and prints its result and says whether an
unexpected crossing was found (exit status 3, ``_cli_io.EXIT_CROSSING``). The values
come from ``_boundary`` through ``scan(boundary=KIND)``.
"""

from __future__ import annotations

import argparse
import dataclasses
import fnmatch
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING

from kcmp_rs._boundary import KINDS, Boundaries, in_cgroup
from kcmp_rs._results import Description, Scan
from kcmp_rs.cli._common import CommandError, explain, print_json
from kcmp_rs.cli._io import out, write_native
from kcmp_rs.cli._render import description_rows, scan_dot, summary

if TYPE_CHECKING:
    from kcmp_rs._native import ScanReport

__all__ = [
    "ALLOW_FIELDS",
    "SCAN_RECORDS",
    "add_audit_flags",
    "allowed",
    "prepare_audit",
    "print_audit",
]

#: What an ``--allow FIELD=PATTERN`` rule may match (fnmatch, case-sensitive).
ALLOW_FIELDS = ("command", "target", "type")

#: The scan's list fields and their JSON Lines record kinds (``scan -j``).
SCAN_RECORDS = {
    "descriptions": "description",
    "skipped": "skipped",
    "undecided": "undecided",
    "fd_table_shared": "fd_table_shared",
    "channels": "channel",
}


def _inside_arg(text: str) -> int | str:
    """A pid (digits) or a cgroup path (starting with ``/``)."""
    if re.fullmatch(r"[0-9]+", text) and 0 < int(text) < 2**31:
        return int(text)
    if text.startswith("/"):
        return text
    raise argparse.ArgumentTypeError(
        f"not a process id or a cgroup path (starting with /): {text!r}"
    )


def _allow_arg(text: str) -> tuple[str, str]:
    field, sep, pattern = text.partition("=")
    if not sep or field not in ALLOW_FIELDS or not pattern:
        raise argparse.ArgumentTypeError(
            f"a rule is FIELD=PATTERN with FIELD one of {', '.join(ALLOW_FIELDS)}, got {text!r}"
        )
    return field, pattern


def add_audit_flags(parser: argparse.ArgumentParser) -> None:
    """``--across``, ``--inside``, ``--allow`` on the scan's parser."""
    parser.add_argument(
        "--across",
        choices=KINDS,
        metavar="KIND",
        help="boundary audit: list only the descriptions held on more than one side of "
        f"a boundary ({', '.join(KINDS)}); exit 3 if one is not allowed",
    )
    parser.add_argument(
        "--inside",
        type=_inside_arg,
        metavar="PID|CGROUP",
        help="with --across: only crossings involving the side of PID, or a holder in "
        "cgroup CGROUP or below it",
    )
    parser.add_argument(
        "--allow",
        type=_allow_arg,
        action="append",
        default=[],
        metavar="RULE",
        help="with --across: an expected crossing, FIELD=PATTERN (fnmatch) with FIELD "
        "command (any holder's), target or type; repeatable, any rule allows",
    )


def prepare_audit(args: argparse.Namespace) -> None:
    """Checks the audit flags (usage errors) and resolves ``--inside PID`` to its
    boundary value (``args.inside_side``) before anything is scanned."""
    args.inside_side = None
    if args.across is None:
        if args.inside is not None or args.allow:
            args.parser.error("--inside and --allow need --across KIND")
        return
    if args.example:
        args.parser.error("--across audits the processes given: it takes no --example")
    if isinstance(args.inside, int):
        try:
            args.inside_side = Boundaries(args.across).value(args.inside)
        except OSError as err:
            why = explain(err, args.inside)
            raise CommandError(
                f"--inside: cannot read the {args.across} boundary of process {args.inside}: " + why
            ) from None


def allowed(d: Description, rules: Sequence[tuple[str, str]]) -> bool:
    """Whether a rule expects ``d``: ``command`` matches when any holder's command
    does (a runtime's shim sharing a container's pipes names the crossing);
    ``target`` and ``type`` match the description's own."""
    for field, pattern in rules:
        if field == "command":
            if any(fnmatch.fnmatchcase(m.command, pattern) for m in d.members):
                return True
        elif fnmatch.fnmatchcase(getattr(d, field), pattern):
            return True
    return False


def _involves(d: Description, args: argparse.Namespace, cgroups: Boundaries) -> bool:
    if args.inside is None:
        return True
    if args.inside_side is not None:
        return args.inside_side in d.boundaries
    for m in d.members:
        try:
            if in_cgroup(cgroups.value(m.pid), args.inside):
                return True
        except OSError:  # gone since the scan: its side is unknown, so not counted in
            continue
    return False


def print_audit(result: Scan, args: argparse.Namespace, report: ScanReport) -> bool:
    """Prints the unexpected crossings (table or JSON) and a summary; True if any.
    ``result`` is the view of ``report``: the JSON of the crossings is written by the
    core from the report, only their members are ever built in Python."""
    cgroups = Boundaries("cgroup")
    crossings = [
        (i, d)
        for i, d in enumerate(result.descriptions)
        if len(d.boundaries) > 1 and _involves(d, args, cgroups)
    ]
    kept = [(i, d) for i, d in crossings if not allowed(d, args.allow)]
    unexpected = tuple(d for _, d in kept)
    shown = dataclasses.replace(result, descriptions=unexpected)
    if args.dot:  # the crossings as a picture, processes clustered by side
        out(scan_dot(shown))
    elif (args.json or args.json_lines) and write_native(
        lambda fd: report.write_json(fd, args.json_lines, [i for i, _ in kept])
    ):
        pass
    elif not print_json(shown.to_dict(), args, "scan", SCAN_RECORDS):
        n = len(crossings)
        out(
            description_rows(unexpected)
            + summary(result)
            + f"; {n} {'crossing' if n == 1 else 'crossings'} across {args.across}"
            + f" ({len(crossings) - len(unexpected)} allowed)\n"
        )
    return bool(unexpected)
