"""Helpers of ``test_scan.py`` and ``test_cli.py``: running ``kcmp-rs`` as a
subprocess, reading its tables back, and checking its JSON against the schema
documented in ``help(kcmp_rs.scan)``."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Mapping, Sequence
from typing import Any

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


# ---- the JSON schema of kcmp_rs.scan (its docstring), checked by hand ----


def _check_keys(obj: Any, required: dict[str, type], optional: dict[str, type], where: str) -> None:
    assert isinstance(obj, dict), f"{where}: not an object: {obj!r}"
    missing = set(required) - set(obj)
    unknown = set(obj) - set(required) - set(optional)
    assert not missing, f"{where}: missing keys {sorted(missing)}"
    assert not unknown, f"{where}: unknown keys {sorted(unknown)}"
    for key, value in obj.items():
        want = required.get(key) or optional[key]
        ok = isinstance(value, want) and not (want is int and isinstance(value, bool))
        assert ok, f"{where}.{key}: {value!r} is not {want.__name__}"


def check_member(obj: Any, where: str = "member") -> None:
    _check_keys(obj, {"pid": int, "fd": int, "command": str}, {"command_bytes_b64": str}, where)


def check_description(obj: Any, where: str = "description") -> None:
    _check_keys(
        obj,
        {"type": str, "mode": str, "target": str, "members": list},
        {"target_bytes_b64": str},
        where,
    )
    assert obj["mode"] in ("r", "w", "rw", "path", "?"), obj["mode"]
    assert obj["members"], f"{where}: no members"
    for i, member in enumerate(obj["members"]):
        check_member(member, f"{where}.members[{i}]")
    refs = [(m["pid"], m["fd"]) for m in obj["members"]]
    assert refs == sorted(set(refs)), f"{where}: members not ascending: {refs}"


def check_scan_document(doc: Any) -> None:
    """Asserts ``doc`` follows the schema of ``Scan.to_dict()`` (``help(kcmp_rs.scan)``)."""
    _check_keys(
        doc,
        {
            "descriptions": list,
            "skipped": list,
            "processes_read": int,
            "fds_classified": int,
            "undecided": list,
            "fd_table_shared": list,
        },
        {},
        "scan",
    )
    for i, d in enumerate(doc["descriptions"]):
        check_description(d, f"descriptions[{i}]")
    firsts = [(d["members"][0]["pid"], d["members"][0]["fd"]) for d in doc["descriptions"]]
    assert firsts == sorted(firsts), "descriptions not ordered by smallest member"
    for i, s in enumerate(doc["skipped"]):
        _check_keys(s, {"pid": int, "reason": str}, {}, f"skipped[{i}]")
    for i, u in enumerate(doc["undecided"]):
        _check_keys(u, {"pid": int, "fd": int}, {}, f"undecided[{i}]")
    for i, table in enumerate(doc["fd_table_shared"]):
        assert isinstance(table, list) and len(table) >= 2, f"fd_table_shared[{i}]: {table!r}"
        assert all(isinstance(p, int) for p in table) and table == sorted(table)


def doc_groups(descriptions: Sequence[Mapping[str, Any]]) -> list[tuple[Ref, ...]]:
    """The (pid, fd) groups of JSON descriptions, in their order."""
    return [tuple((m["pid"], m["fd"]) for m in d["members"]) for d in descriptions]
