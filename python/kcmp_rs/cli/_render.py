"""Every renderer of the ``kcmp-rs`` command, as pure functions of their arguments
(the tests pin their output byte for byte; nothing here reads /proc or calls the native
module): aligned tables with names escaped for a terminal and the scan's summary line;
the sharing graph in Graphviz DOT; JSON Lines from a ``to_dict()`` document.

The sharing graph (``scan --dot``, ``holders --dot``, ``share --dot``): processes are
nodes (pid and command), each open file description a small note (type, mode, target)
with an edge to each process holding it, labelled with that process's fds on it
(``0,1,2``). Render it with ``dot -Tsvg``.

Names are untrusted: a file may be called ``x" shape=box]; p1 -> p2 [label="`` or hold a
newline. Each name is escaped for display as the tables escape it (``escape``), then
quoted for DOT (``quote``), and node ids are generated (``p<pid>``, ``d<n>``), never
taken from a name: no name can end a string, add an attribute or draw an edge. Members
with a ``boundary`` value (the boundary audit's) are grouped in one cluster per value.

The output is sorted, so one input always gives the same text.
"""

from __future__ import annotations

import json
import textwrap
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from kcmp_rs._channels import Channel
from kcmp_rs._results import Description, Holders, Member, Scan, SharedFiles
from kcmp_rs._text import escape

__all__ = [
    "SKIPPED_NAMED",
    "count",
    "description_rows",
    "escape",
    "format_table",
    "holders_dot",
    "json_lines",
    "quote",
    "render_table",
    "scan_dot",
    "shared_files_dot",
    "skipped_rows",
    "summary",
]

# ---- tables ----


def render_table(headers: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    """Aligned columns, two spaces apart; a cell may hold several lines ("\\n"), which
    then stack under one another. Cells must already be escaped; the last column is
    not padded."""
    table = [[cell.split("\n") for cell in row] for row in [list(headers), *rows]]
    widths = [0] * len(headers)
    for row in table:
        for i, lines in enumerate(row):
            widths[i] = max(widths[i], *(len(line) for line in lines))
    out = []
    for row in table:
        for n in range(max(len(lines) for lines in row)):
            cells = [lines[n] if n < len(lines) else "" for lines in row]
            padded = [c.ljust(w) for c, w in zip(cells[:-1], widths)]
            out.append("  ".join([*padded, cells[-1]]).rstrip())
    return "\n".join(out) + "\n"


def count(n: int, one: str, many: str) -> str:
    """``n`` with the noun's singular or plural: "1 process", "2 processes"."""
    return f"{n} {one if n == 1 else many}"


def summary(result: Scan) -> str:
    """One line: processes read, fds classified, descriptions shared, what was skipped."""
    shared = sum(1 for d in result.descriptions if len(d.members) > 1)
    parts = [
        count(result.processes_read, "process read", "processes read"),
        count(result.fds_classified, "fd classified", "fds classified"),
        count(shared, "description shared", "descriptions shared"),
    ]
    if result.fd_table_shared:
        parts.append(count(len(result.fd_table_shared), "fd table shared", "fd tables shared"))
    if result.undecided:
        parts.append(count(len(result.undecided), "fd undecided", "fds undecided"))
    reasons: dict[str, int] = {}
    for s in result.skipped:
        reasons[s.reason] = reasons.get(s.reason, 0) + 1
    skipped = ", ".join(f"{n} {reason}" for reason, n in sorted(reasons.items()))
    parts.append(
        count(len(result.skipped), "process skipped", "processes skipped")
        + (f" ({skipped})" if skipped else "")
    )
    line = ", ".join(parts)
    # A terminal's width: a long one (many skip reasons) goes on as many lines.
    return line if len(line) <= 120 else textwrap.fill(line, width=100)


#: How many skipped processes a table names; the rest are counted (-J lists every one).
SKIPPED_NAMED = 10
#: Most characters shown of a command name and of a reason: a row fits 120 columns.
_COMMAND_WIDTH = 40
_REASON_WIDTH = 60


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."


def skipped_rows(
    skipped: Sequence[tuple[int, str]], commands: Mapping[int, str], limit: int = SKIPPED_NAMED
) -> str:
    """The processes a table's answer left out, one row each (SKIPPED: the pid,
    COMMAND: its escaped name or "?" when not known, REASON), the first ``limit`` of
    them, then ``... and K more; -J lists every one`` ("" for none). Every line fits
    120 columns: a long name or reason is cut short with "..."."""
    rows = [
        [
            str(pid),
            _clip(escape(commands.get(pid, "?")), _COMMAND_WIDTH),
            _clip(escape(reason), _REASON_WIDTH),
        ]
        for pid, reason in skipped[:limit]
    ]
    if not rows:
        return ""
    more = len(skipped) - len(rows)
    tail = f"... and {more} more; -J lists every one\n" if more > 0 else ""
    return render_table(["SKIPPED", "COMMAND", "REASON"], rows) + tail


def description_rows(descriptions: Iterable[Description]) -> str:
    """The descriptions as an aligned table, one row per description ("" for none).

    SHARED lists the members as ``PID,COMMAND,FD``, one per line (like lsfd's
    ENDPOINTS); names are escaped (``escape``). When the members carry boundary values
    (a scan with a boundary), BOUNDARY gives each member's, line for line.
    """
    listed = list(descriptions)
    sided = any(m.boundary is not None for d in listed for m in d.members)
    rows = []
    for d in listed:
        shared = "\n".join(f"{m.pid},{escape(m.command)},{m.fd}" for m in d.members)
        row = [escape(d.type), d.mode, shared]
        if sided:
            row.append("\n".join(escape(m.boundary or "?") for m in d.members))
        rows.append([*row, escape(d.target)])
    headers = ["TYPE", "MODE", "SHARED", *(["BOUNDARY"] if sided else []), "TARGET"]
    return render_table(headers, rows) if rows else ""


def format_table(result: Scan) -> str:
    """The scan as an aligned table (``description_rows``), then a summary line."""
    return description_rows(result.descriptions) + summary(result) + "\n"


# ---- the sharing graph (DOT) ----

_HEAD = (
    "digraph sharing {",
    '  graph [rankdir=LR, fontname="Helvetica", fontsize=11, labelloc=t];',
    '  node [fontname="Helvetica", fontsize=10, style=filled, fillcolor="#e3ecf7"];',
    '  edge [fontname="Helvetica", fontsize=9];',
)


def _text(text: str) -> str:
    # After escape() only printable characters are left; DOT gives meaning to the
    # backslash (\n, \l, \N, ...) and the quote inside a quoted string, and Graphviz
    # reads "&name;" as an HTML entity: all three are made literal.
    shown = escape(text)
    return shown.replace("\\", "\\\\").replace('"', '\\"').replace("&", "&amp;")


def quote(text: str) -> str:
    """``text`` as a DOT double-quoted string that Graphviz shows as ``_table.escape``
    shows it on a terminal: a newline as ``\\n``, ESC as ``\\x1b``, a quote and a
    backslash as themselves; ``<``, ``}``, ``]`` and ``->`` stay plain text inside the
    quotes."""
    return f'"{_text(text)}"'


def _lines(*lines: str) -> str:
    """A label of several lines: DOT's own ``\\n`` between the quoted texts."""
    return '"' + "\\n".join(_text(line) for line in lines) + '"'


def _order(d: Description) -> tuple[tuple[tuple[int, int], ...], str, str, str]:
    return tuple(sorted((m.pid, m.fd) for m in d.members)), d.type, d.target, d.mode


def _fds_by_pid(members: Iterable[Member]) -> dict[int, list[int]]:
    by_pid: dict[int, list[int]] = {}
    for m in sorted(members, key=lambda m: (m.pid, m.fd)):
        fds = by_pid.setdefault(m.pid, [])
        if m.fd not in fds:
            fds.append(m.fd)
    return by_pid


def _process_node(m: Member) -> str:
    return f"p{m.pid} [label={_lines(str(m.pid), m.command)}];"


def _process_lines(processes: dict[int, Member]) -> list[str]:
    """One node per process; with boundary values, one cluster per value (sorted by
    its text), and the processes without one outside any cluster."""
    clusters: dict[str, list[Member]] = {}
    loose: list[Member] = []
    for pid in sorted(processes):
        boundary = getattr(processes[pid], "boundary", None)
        if boundary is None:
            loose.append(processes[pid])
        else:
            clusters.setdefault(str(boundary), []).append(processes[pid])
    out = []
    for n, value in enumerate(sorted(clusters)):
        out += [f"  subgraph cluster_{n} {{", f"    label={quote(value)};"]
        out += [f"    {_process_node(m)}" for m in clusters[value]]
        out.append("  }")
    out += [f"  {_process_node(m)}" for m in loose]
    return out


def _graph(
    title: str, descriptions: Sequence[Description], channels: Sequence[Channel] = ()
) -> str:
    ordered = sorted(range(len(descriptions)), key=lambda i: _order(descriptions[i]))
    node = {i: n for n, i in enumerate(ordered)}
    processes: dict[int, Member] = {}
    for i in ordered:
        for m in sorted(descriptions[i].members, key=lambda m: (m.pid, m.fd)):
            processes.setdefault(m.pid, m)
    lines = [*_HEAD, f"  label={quote(title)};", *_process_lines(processes)]
    for n, i in enumerate(ordered):
        d = descriptions[i]
        label = _lines(f"{d.type} {d.mode}", d.target)
        lines.append(f'  d{n} [shape=note, fontsize=9, fillcolor="#fdf6dc", label={label}];')
        for pid, fds in _fds_by_pid(d.members).items():
            lines.append(f"  d{n} -> p{pid} [label={quote(','.join(map(str, fds)))}];")
    lines += _channel_edges(channels, node)
    lines.append("}")
    return "\n".join(lines) + "\n"


def _channel_edges(channels: Sequence[Channel], node: Mapping[int, int]) -> list[str]:
    """An edge between the descriptions on a channel's two ends, labelled with its kind:
    from the write side to the read side of a pipe or FIFO, both ways for a socket pair
    or a pty."""
    edges = []
    for c in channels:
        (first, one), (_, other) = c.ends[0], c.ends[1]
        if first == "read":  # data flows from the write side
            one, other = other, one
        style = "dir=forward" if first == "read" else "dir=both"
        for a in one:
            for b in other:
                if a != b:  # a FIFO opened O_RDWR is on both sides
                    edges.append(
                        f"  d{node[a]} -> d{node[b]} [label={quote(c.kind)}, {style}, "
                        'color="#3060c0", fontcolor="#3060c0", style=bold];'
                    )
    return edges


def scan_dot(result: Scan) -> str:
    """The descriptions of a scan as a graph (those it reports: the shared ones, or all
    of them with ``include_unshared``), titled with the scan's summary line; with
    channels (``ipc``), an edge between the two ends of each."""
    return _graph(summary(result), result.descriptions, result.channels or ())


def channels_table(result: Scan) -> str:
    """The channels of a scan with ``ipc``: one row per description on an end (KIND
    and CHANNEL on a channel's first row), its side, mode, holders and target."""
    rows = []
    for n, c in enumerate(result.channels or (), 1):
        for k, (side, on) in enumerate((s, i) for s, ids in c.ends for i in ids):
            d = result.descriptions[on]
            holders = "\n".join(f"{m.pid},{escape(m.command)},{m.fd}" for m in d.members)
            first = k == 0
            rows.append(
                [
                    str(n) if first else "",
                    c.kind if first else "",
                    side,
                    d.mode,
                    holders,
                    escape(d.target),
                ]
            )
    return render_table(["CHANNEL", "KIND", "SIDE", "MODE", "HOLDERS", "TARGET"], rows)


def holders_dot(found: Holders) -> str:
    """One description and every process holding it."""
    title = f"holders of fd {found.fd} of process {found.pid}"
    return _graph(title, [found.description])


def shared_files_dot(
    found: SharedFiles,
    command: Callable[[int], str],
    describe: Callable[[int, int], tuple[str, str, str]],
) -> str:
    """The descriptions two processes share. ``SharedFiles`` holds fd numbers only:
    ``command(pid)`` names a process, ``describe(pid, fd)`` gives ``(type, mode,
    target)`` of one fd's description."""
    commands = {pid: command(pid) for pid in sorted({found.pid1, found.pid2})}
    descriptions = []
    for fds1, fds2 in found.shared:
        refs = {(found.pid1, fd) for fd in fds1} | {(found.pid2, fd) for fd in fds2}
        members = tuple(Member(pid, fd, commands[pid]) for pid, fd in sorted(refs))
        if not members:  # every shared pair has fds on both sides; never drawn empty
            continue
        type_, mode, target = describe(members[0].pid, members[0].fd)
        descriptions.append(Description(target, mode, members, type_))
    title = f"open file descriptions shared by {found.pid1} and {found.pid2}"
    return _graph(title, descriptions)


# ---- JSON Lines ----


def json_lines(doc: Mapping[str, Any], command_name: str, records: Mapping[str, str]) -> str:
    """``doc`` (a ``to_dict()`` with ``schema_version``) as JSON Lines carrying all of
    it, each line an object whose ``record`` says what it is: first a ``header``
    (``schema_version``, ``command``), then one line per item of each list field
    (``records`` maps the field to its record kind; an item that is a list becomes
    ``{"pids": [...]}``) and per object field, last a ``summary`` with the scalars and
    the lists of scalars."""
    lines = [{"record": "header", "schema_version": doc["schema_version"], "command": command_name}]
    summary: dict[str, Any] = {"record": "summary"}
    for key, value in doc.items():
        if key == "schema_version":
            continue
        if isinstance(value, list) and all(isinstance(v, str) for v in value) and value:
            summary[key] = value
        elif isinstance(value, list):
            kind = records.get(key, key)
            for item in value:
                body = item if isinstance(item, dict) else {"pids": item}
                lines.append({"record": kind, **body})
        elif isinstance(value, dict):
            lines.append({"record": records.get(key, key), **value})
        else:
            summary[key] = value
    lines.append(summary)
    return "".join(json.dumps(line, ensure_ascii=False) + "\n" for line in lines)
