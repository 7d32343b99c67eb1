"""The ``kcmp-rs`` command's streams and environment, every subcommand alike: a reader
that goes away (``| head``), stdout closed or failing, and each ``KCMP_RS_NO_KCMP``
value. Each case runs ``python -m kcmp_rs`` with the stdout it names."""

from __future__ import annotations

import fcntl
import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from _family import build_family
from _scan_helpers import missing_pid
from conftest import Spawn
from kcmp_rs import _config, cli
from kcmp_rs.cli import _common as _cli_common
from kcmp_rs.cli import _io as _cli_io

# The same on every kernel: the kernel-test guests leave it out (pyproject's markers).
pytestmark = pytest.mark.userland

# Every subcommand and the help and version output; "{pid}" is a child of the test.
COMMANDS = [
    ["demo"],
    ["fds", "{pid}"],
    ["share", "{pid}", "{pid}"],
    ["scan", "-p", "{pid}"],
    ["scan", "-p", "{pid}", "-J"],
    ["scan", "-p", "{pid}", "-j"],
    ["scan", "-p", "{pid}", "--watch", "0.01", "--count", "2"],
    ["scan", "--example"],
    ["scan", "--example", "-J"],
    ["escapes", "-p", "{pid}"],
    ["escapes", "-p", "{pid}", "-J"],
    ["--help"],
    ["scan", "--help"],
    ["--version"],
]
IDS = [" ".join(c) for c in COMMANDS]

# Python buffers stdout in a pipe unless PYTHONUNBUFFERED is set: the failing write
# then happens at a different moment (a flush, or each write), and both must be quiet.
BUFFERING = ["buffered", "unbuffered"]

F_SETPIPE_SZ = 1031


@pytest.fixture
def target(spawn: Spawn) -> str:
    return str(spawn().pid)


def _argv(command: list[str], pid: str) -> list[str]:
    return [sys.executable, "-m", "kcmp_rs", *(a.replace("{pid}", pid) for a in command)]


def _env(tmp_path: Path, buffering: str = "buffered", **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONUNBUFFERED", _config.NO_KCMP)}
    if buffering == "unbuffered":
        env["PYTHONUNBUFFERED"] = "1"
    return {**env, "TMPDIR": str(tmp_path), **extra}


def _in_shell(
    script: str, command: list[str], pid: str, env: dict[str, str]
) -> subprocess.CompletedProcess[bytes]:
    """``sh -c SCRIPT`` with the command as ``"$@"``, output captured."""
    return subprocess.run(
        ["sh", "-c", script, "sh", *_argv(command, pid)],
        capture_output=True,
        env=env,
        timeout=120,
        check=False,
    )


def _leftovers(tmp_path: Path) -> list[Path]:
    """What the demo or the example family left in TMPDIR (nothing, once cleaned up)."""
    return list(tmp_path.iterdir())


# ---- the reader goes away ----


@pytest.mark.parametrize("buffering", BUFFERING)
@pytest.mark.parametrize("command", COMMANDS, ids=IDS)
def test_reader_gone_before_any_output(
    command: list[str], buffering: str, target: str, tmp_path: Path
) -> None:
    # The read end closed before the command starts: its first write meets EPIPE.
    r, w = os.pipe()
    os.close(r)
    try:
        done = subprocess.run(
            _argv(command, target),
            stdout=w,
            stderr=subprocess.PIPE,
            env=_env(tmp_path, buffering),
            timeout=120,
            check=False,
        )
    finally:
        os.close(w)
    assert done.stderr == b""
    assert done.returncode == _cli_io.EXIT_READER_GONE == 141
    assert _leftovers(tmp_path) == []


@pytest.mark.parametrize("buffering", BUFFERING)
@pytest.mark.parametrize("command", COMMANDS, ids=IDS)
def test_reader_gone_after_the_first_line(
    command: list[str], buffering: str, target: str, tmp_path: Path
) -> None:
    # `kcmp-rs ... | head -1` as a program does it: one line read, then the pipe
    # closed. Whether the command still had text to write depends on timing, so the
    # status is 0 (it had written all) or 141 (it had not); stderr is empty either way.
    proc = subprocess.Popen(
        _argv(command, target),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=_env(tmp_path, buffering),
    )
    assert proc.stdout is not None and proc.stderr is not None
    with proc:
        fcntl.fcntl(proc.stdout.fileno(), F_SETPIPE_SZ, 4096)  # a page: cut sooner
        first = proc.stdout.readline()
        proc.stdout.close()
        err = proc.stderr.read()
        status = proc.wait(timeout=120)
    assert first.endswith(b"\n")
    assert err == b""
    assert status in (0, _cli_io.EXIT_READER_GONE)
    assert _leftovers(tmp_path) == []


@pytest.mark.parametrize("form", ["", "-J", "-j"])
def test_reader_gone_midway_through_a_long_output(form: str, tmp_path: Path) -> None:
    # More output than the pipe holds plus what is read: the command is still writing
    # when the reader leaves, so it must meet EPIPE, and its status must say so.
    with build_family(24, 64) as family:
        r, w = os.pipe()
        try:
            size = fcntl.fcntl(w, F_SETPIPE_SZ, 4096)  # the least: one page
            pids = ",".join(map(str, family.pids))
            proc = subprocess.Popen(
                _argv(["scan", "--all", "-p", pids, *filter(None, [form])], ""),
                stdout=w,
                stderr=subprocess.PIPE,
                env=_env(tmp_path),
            )
            os.close(w)
            w = -1
            assert proc.stderr is not None
            with proc:
                head = os.read(r, 64)
                os.close(r)
                r = -1
                err = proc.stderr.read()
                status = proc.wait(timeout=120)
        finally:
            for fd in (r, w):
                if fd >= 0:
                    os.close(fd)
    assert len(family.labels) * 60 > size + 64  # each fd is a line of its own, at least
    assert head
    assert (status, err) == (_cli_io.EXIT_READER_GONE, b"")


@pytest.mark.parametrize("command", COMMANDS, ids=IDS)
def test_piped_into_head_prints_nothing_on_stderr(
    command: list[str], target: str, tmp_path: Path
) -> None:
    # The shell pipeline itself; its stderr is the command's and head's together.
    # The demo's forked child, too, must say nothing (it once printed "Broken pipe"
    # and its parent "the child process N exited with 1").
    for _ in range(3 if command == ["demo"] else 1):
        done = _in_shell('"$@" | head -n 1', command, target, _env(tmp_path))
        assert done.stderr == b""
        assert done.returncode == 0
        assert done.stdout.count(b"\n") == 1
    assert _leftovers(tmp_path) == []


# ---- stdout closed, or failing ----


@pytest.mark.parametrize("command", [*COMMANDS, ["frobnicate"]], ids=[*IDS, "usage error"])
def test_stdout_closed(command: list[str], target: str, tmp_path: Path) -> None:
    # `kcmp-rs ... >&-`: fd 1 is not open at all when Python starts.
    done = _in_shell('exec "$@" >&-', command, target, _env(tmp_path))
    assert done.stderr == b"kcmp-rs: standard output is closed\n"
    assert done.returncode == 1
    assert _leftovers(tmp_path) == []


@pytest.mark.parametrize(
    ("redirect", "why"),
    [
        (">/dev/full", "No space left on device"),
        ("1</dev/null", "Bad file descriptor"),  # open, but not for writing
    ],
)
@pytest.mark.parametrize("buffering", BUFFERING)
@pytest.mark.parametrize("command", COMMANDS, ids=IDS)
def test_stdout_failing(
    command: list[str], buffering: str, redirect: str, why: str, target: str, tmp_path: Path
) -> None:
    done = _in_shell(f'exec "$@" {redirect}', command, target, _env(tmp_path, buffering))
    assert done.stderr.decode() == f"kcmp-rs: cannot write to standard output: {why}\n"
    assert done.returncode == 1
    assert _leftovers(tmp_path) == []


def test_main_in_process_with_stdout_none(monkeypatch: pytest.MonkeyPatch) -> None:
    err = io.StringIO()
    monkeypatch.setattr("sys.stdout", None)
    monkeypatch.setattr("sys.stderr", err)
    assert cli.main(["--version"]) == 1
    assert err.getvalue() == "kcmp-rs: standard output is closed\n"


def test_stderr_closed_too_is_no_traceback(tmp_path: Path) -> None:
    # Nothing left to tell: the status alone says it.
    gone = missing_pid()
    done = _in_shell('exec "$@" 2>&-', ["fds", str(gone)], "", _env(tmp_path))
    assert (done.returncode, done.stdout, done.stderr) == (1, b"", b"")


# ---- process errors: one line, status 1 ----


def test_process_lookup_errors_are_one_line() -> None:
    # The library's words name the kind: absent, exited during the call, a zombie.
    kinds = [
        "process 12 does not exist",
        "process 12 exited during the call (its pid may now name another process)",
        "process 12 has exited and awaits reaping (a zombie): it has no resources left",
    ]
    for said in kinds:
        e = ProcessLookupError(3, f"{os.strerror(3)}: {said}")
        e.pid = 12  # type: ignore[attr-defined]
        assert _cli_common.explain(e) == said
    # Words that name no process: the command names it.
    e = ProcessLookupError(3, f"{os.strerror(3)}: gone")
    assert _cli_common.explain(e, 12) == "process 12 does not exist"


# ---- KCMP_RS_NO_KCMP ----

DISABLING = ["1", "true", "TRUE", "True", "yes", "YES", "on", "On", " 1", "yes\n", "\ton "]
KEEPING: list[str | None] = [None, "", " ", "\t", "0", "false", "FALSE", "no", "No", "off"]
KEEPING += ["OFF", " 0 ", "off\n"]
UNKNOWN = ["2", "-1", "y", "n", "enable", "disable", "truee", "1 1", "0x1", "nope"]

_PROBE = (
    "import json, kcmp_rs\n"
    "s = kcmp_rs.support()\n"
    "print(json.dumps({'kcmp': s.kcmp, 'reason': s.reason}))\n"
)


def _probe(value: str | None, tmp_path: Path) -> tuple[dict[str, object], str]:
    env = _env(tmp_path)
    if value is not None:
        env[_config.NO_KCMP] = value
    done = subprocess.run(
        [sys.executable, "-c", _PROBE], capture_output=True, env=env, timeout=60, check=True
    )
    answer: dict[str, object] = json.loads(done.stdout)
    return answer, done.stderr.decode()


@pytest.fixture(scope="module")
def unset_support(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """support() where the variable is unset: what every value that keeps kcmp gives."""
    answer, err = _probe(None, tmp_path_factory.mktemp("probe"))
    assert err == ""
    assert "disabled by configuration" not in str(answer["reason"])
    return answer


@pytest.mark.parametrize("value", DISABLING, ids=repr)
def test_no_kcmp_values_that_disable(value: str, tmp_path: Path) -> None:
    answer, err = _probe(value, tmp_path)
    assert err == ""
    assert answer["kcmp"] is False
    assert "disabled by configuration" in str(answer["reason"])


@pytest.mark.parametrize("value", KEEPING, ids=repr)
def test_no_kcmp_values_that_keep_kcmp(
    value: str | None, unset_support: dict[str, object], tmp_path: Path
) -> None:
    answer, err = _probe(value, tmp_path)
    assert err == ""
    assert answer == unset_support


def _warning_text(value: str) -> str:
    return (
        f"RuntimeWarning: KCMP_RS_NO_KCMP={value!r} is not understood, so kcmp(2) stays in "
        "use: 1, true, yes, on turn it off; unset, empty, 0, false, no, off leave it on "
        "(any case)"
    )


@pytest.mark.parametrize("value", UNKNOWN, ids=repr)
def test_no_kcmp_unknown_values_warn_once_and_keep_kcmp(
    value: str, unset_support: dict[str, object], tmp_path: Path
) -> None:
    answer, err = _probe(value, tmp_path)
    assert answer == unset_support
    assert err.count("RuntimeWarning") == 1, err
    assert _warning_text(value) in err


def test_no_kcmp_unknown_value_warns_once_in_the_cli(target: str, tmp_path: Path) -> None:
    done = subprocess.run(
        _argv(["fds", "{pid}"], target),
        capture_output=True,
        env=_env(tmp_path, **{_config.NO_KCMP: "maybe"}),
        timeout=60,
        check=False,
    )
    err = done.stderr.decode()
    assert done.returncode == 0, err
    assert err.count("RuntimeWarning") == 1 and _warning_text("maybe") in err


def test_no_kcmp_parsing_in_process() -> None:
    # The same rules without a subprocess, and the lists the docs quote.
    assert _config.DISABLE_VALUES == ("1", "true", "yes", "on")
    assert _config.KEEP_VALUES == ("", "0", "false", "no", "off")
    for value in DISABLING:
        assert _config.kcmp_disabled_by_environment({_config.NO_KCMP: value}) is True
    for kept in KEEPING:
        env = {} if kept is None else {_config.NO_KCMP: kept}
        assert _config.kcmp_disabled_by_environment(env) is False
    for value in UNKNOWN:
        with pytest.warns(RuntimeWarning) as caught:
            assert _config.kcmp_disabled_by_environment({_config.NO_KCMP: value}) is False
        assert len(caught) == 1
        assert str(caught[0].message) in _warning_text(value)


# ---- what --help and the manual say ----


def test_help_lists_exit_statuses_and_the_variable(tmp_path: Path) -> None:
    done = subprocess.run(
        _argv(["--help"], ""), capture_output=True, env=_env(tmp_path), timeout=60, check=True
    )
    out = done.stdout.decode()
    for status in ("0 ", "1 ", "2 ", "4 ", "130 ", "141 "):
        assert f"\n  {status}" in out, status
    assert "KCMP_RS_NO_KCMP=1 (or true, yes, on) never issue kcmp(2)" in out
    assert "unset, empty, 0, false, no, off keep it" in out


def _manual_section(page: str, title: str) -> str:
    text = (Path(__file__).resolve().parent.parent / "docs" / page).read_text()
    return text.split(f"\n## {title}\n", 1)[1].split("\n## ", 1)[0]


def test_the_manual_states_what_the_code_does() -> None:
    containers = _manual_section("sandboxes.md", "Containers and sandboxes")
    assert "`1`, `true`, `yes`, `on`" in containers
    assert "unset, empty, `0`, `false`, `no`, `off`" in containers
    statuses = _manual_section("cli.md", "Exit statuses")
    for status in (0, 1, 2, 3, 4, 130, 141):
        assert re.search(rf"\s{status}\s", statuses.replace(",", " ")), status
