"""Helpers of ``test_scan.py`` and ``test_cli.py``: running ``kcmp-rs`` as a
subprocess, reading its tables back, and checking its JSON against the schema
documented in ``help(kcmp_rs.scan)``."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import typing
from collections.abc import Mapping, Sequence
from typing import Any

from kcmp_rs import _schema
from kcmp_rs._results import SCHEMA_VERSION

Ref = tuple[int, int]


def run_cli(
    *args: str,
    env: Mapping[str, str] | None = None,
    timeout: float = 120.0,
) -> subprocess.CompletedProcess[bytes]:
    """``python -m kcmp_rs ARGS`` with stdout and stderr captured as bytes; ``env``:
    variables added to this process's environment. (To run as another user, call
    ``kcmp_rs.cli.main`` in a forked child after ``drop_privileges``: the interpreter
    may live where that user cannot exec it.)"""
    return subprocess.run(
        [sys.executable, "-m", "kcmp_rs", *args],
        capture_output=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        check=False,
    )


def missing_pid() -> int:
    """A pid no process can have: one above the kernel's pid_max."""
    with open("/proc/sys/kernel/pid_max") as f:
        return int(f.read()) + 1


def parse_table(text: str) -> tuple[list[dict[str, list[str]]], list[str]]:
    """Reads an aligned table of ``kcmp-rs`` back: (rows, lines after the table).

    Columns start where their header does; a line whose first cell is empty continues
    the row above (multi-line cells). Each row maps a header to its cell's lines.
    """
    lines = text.splitlines()
    header = lines[0]
    # A header may hold single spaces ("FDS OF 12"); columns are two spaces apart.
    found = list(re.finditer(r"\S+(?: \S+)*", header))
    starts = [m.start() for m in found]
    names = [m.group() for m in found]
    rows: list[dict[str, list[str]]] = []
    rest_at = len(lines)
    for n, line in enumerate(lines[1:], start=1):
        if not line.strip():
            rest_at = n
            break
        cells = [
            line[a:b].strip() if b is not None else line[a:].strip()
            for a, b in zip(starts, [*starts[1:], None])
        ]
        if cells[0]:
            rows.append({name: [cell] if cell else [] for name, cell in zip(names, cells)})
        elif rows:
            for name, cell in zip(names, cells):
                if cell:
                    rows[-1][name].append(cell)
        else:
            raise AssertionError(f"table starts with a continuation line: {line!r}")
    return rows, lines[rest_at:]


def split_skipped(text: str) -> tuple[str, list[tuple[int, str, str]], str]:
    """A table command's stdout split at its SKIPPED rows: (the text before them, the
    rows as ``(pid, command, reason)``, the ``... and K more`` line or "")."""
    before, header, rest = text.partition("\nSKIPPED  ")
    if not header:
        return text, [], ""
    lines = ("SKIPPED  " + rest).splitlines()
    more = lines.pop() if lines[-1].startswith("... and ") else ""
    rows, after = parse_table("\n".join(lines) + "\n")
    assert after == [], after
    found = [(int(r["SKIPPED"][0]), r["COMMAND"][0], " ".join(r["REASON"])) for r in rows]
    return before + "\n", found, more


def scan_table_rows(text: str) -> tuple[list[dict[str, list[str]]], str]:
    """The rows of a ``kcmp-rs scan`` table and its summary line."""
    lines = text.splitlines()
    summary = lines[-1]
    assert "processes read" in summary or "process read" in summary, summary
    if len(lines) == 1:
        return [], summary
    rows, _ = parse_table("\n".join(lines[:-1]) + "\n")
    return rows, summary


def shared_refs(cell_lines: Sequence[str]) -> tuple[Ref, ...]:
    """``PID,COMMAND,FD`` lines as (pid, fd) pairs (the command may hold commas)."""
    refs = []
    for line in cell_lines:
        pid, _, rest = line.partition(",")
        _, _, fd = rest.rpartition(",")
        refs.append((int(pid), int(fd)))
    return tuple(refs)


# ---- the JSON shapes (kcmp_rs._schema's TypedDicts), checked field by field ----


def check_typed(obj: Any, shape: Any, where: str) -> None:
    """Asserts ``obj`` (parsed JSON) has exactly the shape of the TypedDict, list type,
    Literal or scalar type ``shape``: every required key, no unknown key, each value
    of its declared type (a bool is not an int)."""
    origin = typing.get_origin(shape)
    if origin is list:
        assert isinstance(obj, list), f"{where}: not a list: {obj!r}"
        (item,) = typing.get_args(shape)
        for i, value in enumerate(obj):
            check_typed(value, item, f"{where}[{i}]")
    elif origin is typing.Literal:
        assert obj in typing.get_args(shape), f"{where}: {obj!r} not in {typing.get_args(shape)}"
    elif isinstance(shape, type) and issubclass(shape, dict):
        assert isinstance(obj, dict), f"{where}: not an object: {obj!r}"
        hints = typing.get_type_hints(shape)
        missing = set(shape.__required_keys__) - set(obj)  # type: ignore[attr-defined]
        unknown = set(obj) - set(hints)
        assert not missing, f"{where}: missing keys {sorted(missing)}"
        assert not unknown, f"{where}: unknown keys {sorted(unknown)}"
        for key, value in obj.items():
            check_typed(value, hints[key], f"{where}.{key}")
    else:
        ok = isinstance(obj, shape) and not (shape is int and isinstance(obj, bool))
        assert ok, f"{where}: {obj!r} is not {shape.__name__}"


def check_member(obj: Any, where: str = "member") -> None:
    check_typed(obj, _schema.MemberDict, where)


def check_description(obj: Any, where: str = "description") -> None:
    check_typed(obj, _schema.DescriptionDict, where)
    assert obj["mode"] in ("r", "w", "rw", "path", "?"), obj["mode"]
    assert obj["members"], f"{where}: no members"
    refs = [(m["pid"], m["fd"]) for m in obj["members"]]
    assert refs == sorted(set(refs)), f"{where}: members not ascending: {refs}"


def check_scan_document(doc: Any) -> None:
    """Asserts ``doc`` follows ``Scan.to_dict()``'s shape (``_schema.ScanDict``, the
    schema in ``help(kcmp_rs.scan)``) and its orderings."""
    check_typed(doc, _schema.ScanDict, "scan")
    assert doc["schema_version"] == SCHEMA_VERSION
    for i, d in enumerate(doc["descriptions"]):
        check_description(d, f"descriptions[{i}]")
    firsts = [(d["members"][0]["pid"], d["members"][0]["fd"]) for d in doc["descriptions"]]
    assert firsts == sorted(firsts), "descriptions not ordered by smallest member"
    for i, table in enumerate(doc["fd_table_shared"]):
        assert len(table) >= 2, f"fd_table_shared[{i}]: {table!r}"
        assert table == sorted(table)


#: The scan's list fields and their JSON Lines record kinds.
SCAN_RECORDS = {
    "descriptions": "description",
    "skipped": "skipped",
    "undecided": "undecided",
    "fd_table_shared": "fd_table_shared",
}


def from_json_lines(text: str, command: str, lists: Mapping[str, str]) -> dict[str, Any]:
    """The ``-J`` document that ``-j`` output carries, rebuilt: the header's
    ``schema_version`` first, each list field from its records (``lists`` maps the
    field to its record kind, as the CLI does), an object field from its one record,
    the summary's scalars. Asserts every line has a ``record`` and the frame is whole."""
    lines = [json.loads(line) for line in text.splitlines()]
    assert lines[0] == {"record": "header", "schema_version": SCHEMA_VERSION, "command": command}
    assert lines[-1]["record"] == "summary", lines[-1]
    doc: dict[str, Any] = {"schema_version": lines[0]["schema_version"]}
    kinds = {kind: field for field, kind in lists.items()}
    for line in lines[1:-1]:
        kind = line.pop("record")
        if kind in kinds:
            item = line["pids"] if set(line) == {"pids"} else line
            doc.setdefault(kinds[kind], []).append(item)
        else:
            doc[kind] = line
    for field in lists:
        doc.setdefault(field, [])
    doc.update({k: v for k, v in lines[-1].items() if k != "record"})
    return doc


def doc_groups(descriptions: Sequence[Mapping[str, Any]]) -> list[tuple[Ref, ...]]:
    """The (pid, fd) groups of JSON descriptions, in their order."""
    return [tuple((m["pid"], m["fd"]) for m in d["members"]) for d in descriptions]
