"""The CLI's text output: aligned tables, names escaped for a terminal, the scan's
summary line.

Only formatting: nothing here reads /proc or calls the native module, so every function
is a pure function of its arguments (the tests pin their output byte for byte).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from kcmp_rs._results import Description, Scan

__all__ = ["description_rows", "escape", "format_table", "render_table", "summary"]

_NAMED_ESCAPES = {"\n": "\\n", "\t": "\\t", "\r": "\\r", "\\": "\\\\"}


def escape(text: str) -> str:
    """``text`` safe to print on a terminal, every character still visible:
    ``"a\\x1b[31m\\n"`` shows as ``a\\x1b[31m\\n``.

    ``\\n``, ``\\t``, ``\\r``, ``\\\\`` for a backslash, ``\\xNN`` for other ASCII
    control characters and for each byte that is not UTF-8 (a lone surrogate
    U+DC80..U+DCFF from ``os.fsdecode``), ``\\uNNNN`` / ``\\UNNNNNNNN`` for other
    unprintable characters (C1 controls, bidi overrides, line separators).
    """
    if text.isprintable() and "\\" not in text:
        return text
    out = []
    for ch in text:
        code = ord(ch)
        if ch in _NAMED_ESCAPES:
            out.append(_NAMED_ESCAPES[ch])
        elif 0xDC80 <= code <= 0xDCFF:  # a byte that was not UTF-8 (surrogateescape)
            out.append(f"\\x{code - 0xDC00:02x}")
        elif ch.isprintable():
            out.append(ch)
        elif code < 0x80:
            out.append(f"\\x{code:02x}")
        elif code < 0x10000:
            out.append(f"\\u{code:04x}")
        else:
            out.append(f"\\U{code:08x}")
    return "".join(out)


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


def _count(n: int, one: str, many: str) -> str:
    return f"{n} {one if n == 1 else many}"


def summary(result: Scan) -> str:
    """One line: processes read, fds classified, descriptions shared, what was skipped."""
    shared = sum(1 for d in result.descriptions if len(d.members) > 1)
    parts = [
        _count(result.processes_read, "process read", "processes read"),
        _count(result.fds_classified, "fd classified", "fds classified"),
        _count(shared, "description shared", "descriptions shared"),
    ]
    if result.fd_table_shared:
        parts.append(_count(len(result.fd_table_shared), "fd table shared", "fd tables shared"))
    if result.undecided:
        parts.append(_count(len(result.undecided), "fd undecided", "fds undecided"))
    reasons: dict[str, int] = {}
    for s in result.skipped:
        reasons[s.reason] = reasons.get(s.reason, 0) + 1
    skipped = ", ".join(f"{n} {reason}" for reason, n in sorted(reasons.items()))
    parts.append(
        _count(len(result.skipped), "process skipped", "processes skipped")
        + (f" ({skipped})" if skipped else "")
    )
    return ", ".join(parts)


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
