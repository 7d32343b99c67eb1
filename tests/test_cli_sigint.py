"""Ctrl-C at any moment of ``kcmp-rs`` ends it quietly: status 130 once the command's
handling is in place, death by SIGINT before (as a C tool dies), never a traceback.

The signal is sent at known points, not after guessed delays: the command runs with
``PYTHONPROFILEIMPORTTIME=1`` (Python's own ``-X importtime``), which writes a line on
stderr as each import completes; the test reads stderr up to the line of one module
and sends SIGINT then. CPython's own start-up (before the entry package runs) is the
interpreter's and is not tested here: no package can handle a signal before it runs.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import pytest
from kcmp_rs import cli

# The same on every kernel: the kernel-test guests leave it out (pyproject's markers).
pytestmark = pytest.mark.userland

#: The console script pip wrote next to this interpreter (``[project.scripts]``).
SCRIPT = Path(sys.executable).parent / "kcmp-rs"
DIED_OF_SIGINT = -signal.SIGINT
TIMEOUT = 60.0


def _imported(line: str) -> str | None:
    """The module an ``-X importtime`` line reports imported, else None."""
    found = re.fullmatch(r"import time:\s+\d+ \|\s+\d+ \|\s*(\S+)", line.rstrip("\n"))
    return found.group(1) if found else None


def interrupt_after(module: str, argv: Sequence[str], *, delay: float = 0.0) -> tuple[int, str]:
    """Starts ``argv``, sends it SIGINT once ``module`` has been imported (and then
    ``delay`` seconds later); its exit status and stderr without the import lines."""
    env = {**os.environ, "PYTHONPROFILEIMPORTTIME": "1"}
    proc = subprocess.Popen(
        list(argv), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, text=True
    )
    assert proc.stderr is not None
    kept: list[str] = []
    try:
        for line in proc.stderr:
            name = _imported(line)
            if name is None and not line.startswith("import time: self"):
                kept.append(line)
            if name == module:
                break
        else:
            raise AssertionError(f"{module} was never imported: {''.join(kept)}")
        if delay:  # a spread of moments after the marker (the slow round), not a guess
            time.sleep(delay)
        proc.send_signal(signal.SIGINT)
        _, rest = proc.communicate(timeout=TIMEOUT)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    kept += [line + "\n" for line in rest.splitlines() if _imported(line + "\n") is None]
    return proc.returncode, "".join(kept)


def _quiet(err: str) -> None:
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err
    assert "Fatal Python error" not in err, err


def test_the_script_is_the_entry_package_whose_import_imports_nothing() -> None:
    text = SCRIPT.read_text()
    assert "from _kcmp_rs_cli import main" in text, text
    code = (
        "import sys, _kcmp_rs_cli, signal\n"
        "print(sorted(m for m in sys.modules if m.startswith('kcmp_rs')))\n"
        "print(signal.getsignal(signal.SIGINT) == signal.SIG_DFL)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "[]\nTrue\n"


def test_importing_the_library_or_the_cli_leaves_sigint_alone() -> None:
    code = (
        "import contextlib, signal\n"
        "import kcmp_rs, kcmp_rs.cli, kcmp_rs.cli._main\n"
        "with contextlib.suppress(SystemExit):\n"
        "    kcmp_rs.cli.main(['--version'])\n"
        "print(signal.getsignal(signal.SIGINT) is signal.default_int_handler)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "True", done.stdout


@pytest.mark.parametrize(
    "module",
    [
        "_kcmp_rs_cli",  # the entry package: kcmp_rs not imported yet
        "kcmp_rs._native",  # inside kcmp_rs/__init__
        "kcmp_rs._results",
        "argparse",  # inside kcmp_rs.cli._main
    ],
)
def test_ctrl_c_while_the_command_is_imported_dies_of_sigint(module: str) -> None:
    status, err = interrupt_after(module, [str(SCRIPT), "demo"])
    _quiet(err)
    assert status == DIED_OF_SIGINT, (status, err)


def test_ctrl_c_as_the_command_starts_is_130_or_sigint() -> None:
    # The command module is imported: `console` is about to put Python's handler back.
    status, err = interrupt_after("kcmp_rs.cli._main", [str(SCRIPT), "demo"])
    _quiet(err)
    assert status in (DIED_OF_SIGINT, 130), (status, err)


def test_ctrl_c_while_the_command_runs_is_130_and_cleans_up() -> None:
    # scan --example imports its family builder when it starts building the family.
    before = set(Path("/tmp").glob("kcmp-family-*"))
    status, err = interrupt_after("kcmp_rs._example", [str(SCRIPT), "scan", "--example"])
    _quiet(err)
    assert (status, err) == (130, "")
    assert set(Path("/tmp").glob("kcmp-family-*")) <= before


def test_python_m_kcmp_rs_goes_through_the_entry_package() -> None:
    status, err = interrupt_after("_kcmp_rs_cli", [sys.executable, "-m", "kcmp_rs", "demo"])
    _quiet(err)
    assert status == DIED_OF_SIGINT, (status, err)
    argv = [sys.executable, "-m", "kcmp_rs", "scan", "--example"]
    status, err = interrupt_after("kcmp_rs._example", argv)
    _quiet(err)
    assert (status, err) == (130, "")


def test_a_sigint_the_shell_ignores_stays_ignored() -> None:
    # `kcmp-rs ... &` in a script: SIGINT ignored from the start, and it must stay so.
    argv = ["sh", "-c", 'trap "" INT; exec "$0" demo', str(SCRIPT)]
    status, err = interrupt_after("kcmp_rs._native", argv)
    assert (status, err) == (0, "")


def test_main_returns_130_on_a_keyboard_interrupt_before_the_subcommand(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def interrupted() -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(cli._main, "build_parser", interrupted)
    assert cli.main(["demo"]) == 130


@pytest.mark.slow
def test_ctrl_c_at_spread_moments_after_start_up_never_prints_a_traceback() -> None:
    """60 runs, SIGINT 0 to 150 ms after the entry package ran: through the import of
    kcmp_rs, the parser, the demo and the interpreter's exit."""
    statuses = set()
    for n in range(60):
        status, err = interrupt_after("_kcmp_rs_cli", [str(SCRIPT), "demo"], delay=n * 0.0025)
        _quiet(err)
        statuses.add(status)
    assert statuses <= {0, 130, DIED_OF_SIGINT}, statuses
    assert DIED_OF_SIGINT in statuses
