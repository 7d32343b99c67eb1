"""The pytest plugin: ``pytest --fd-leaks`` reports, per test, the fds it left open
and the children it started that still hold this process's files (``FdLeakCheck``).

Registered through the ``pytest11`` entry point ``kcmp_rs``; only pytest imports this
module (the package never does). Off unless asked for: ``--fd-leaks`` (``warn``),
``--fd-leaks=warn``, ``--fd-leaks=fail``, or ``fd_leaks = warn|fail|off`` in the ini
file (the command line wins). Off, it adds the option and nothing else: no hook of
it runs around any test.

The window of a test runs from the start of its call phase to the end of its
teardown. Setup is outside it: a module- or session-scoped fixture first set up for
this test legitimately outlives it, and fixtures opening in setup and closing in
teardown are simply open before and closed after. Teardown is inside it: fixtures
close what the test opened and reap the children it started (finalizers, a
spawning fixture), and that is no leak. What a function-scoped fixture opens in
setup and never closes is therefore not seen. A test whose call fails, is skipped or
xfails is not checked: its traceback keeps its locals, open files included, alive.
Both hooks are the outermost wrappers, so pytest's output capture is off at both ends
and fd 1 and 2 are the same files there.

``warn``: an ``FdLeakWarning`` (a ``pytest.PytestWarning``) naming the test, in the
warnings summary. ``fail``: the test errors in its teardown with the report (pytest
reports what is found after a test ran as an error at teardown).
"""

from __future__ import annotations

from collections.abc import Generator

import pytest

from kcmp_rs._leaks import FdLeakCheck

__all__ = ["FdLeakWarning"]

MODES = ("warn", "fail", "off")
#: The name the checker is registered under when the plugin is on.
CHECKER = "kcmp_rs-fd-leaks"


class FdLeakWarning(pytest.PytestWarning):
    """A test left fds open, or children holding this process's files (``--fd-leaks``)."""


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("fd-leaks", "fd leaks (kcmp_rs)")
    group.addoption(
        "--fd-leaks",
        nargs="?",
        const="warn",
        default=None,
        choices=MODES,
        dest="fd_leaks",
        metavar="warn|fail|off",
        help="report the fds each test leaves open and the children it leaves holding "
        "this process's files: warn (the default value) or fail; give the value with = "
        "(--fd-leaks=fail) or put the option after the test paths",
    )
    parser.addini("fd_leaks", "fd-leak checking: warn, fail or off (default)", default="off")


def _mode(config: pytest.Config) -> str:
    given = config.getoption("fd_leaks")
    if given is not None:
        return str(given)
    ini = str(config.getini("fd_leaks")).strip()
    if ini not in MODES:
        raise pytest.UsageError(
            f"fd_leaks = {ini!r} in the ini file is not a mode: use warn, fail or off"
        )
    return ini


def pytest_configure(config: pytest.Config) -> None:
    mode = _mode(config)
    if mode != "off":
        config.pluginmanager.register(FdLeakChecker(mode), CHECKER)


class FdLeakChecker:
    """The hooks that run when the plugin is on: one ``FdLeakCheck`` per test."""

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self._checks: dict[str, FdLeakCheck] = {}

    @pytest.hookimpl(wrapper=True, tryfirst=True)
    def pytest_runtest_call(self, item: pytest.Item) -> Generator[None, None, None]:
        check = FdLeakCheck()
        check.start()
        # A test that fails, skips or xfails raises here and is not checked.
        result = yield
        self._checks[item.nodeid] = check
        return result

    @pytest.hookimpl(wrapper=True, tryfirst=True)
    def pytest_runtest_teardown(self, item: pytest.Item) -> Generator[None, None, None]:
        check = self._checks.pop(item.nodeid, None)
        result = yield
        if check is not None:
            leaks = check.stop()
            if not leaks.clean:
                self._report(item, leaks.report(item.nodeid))
        return result

    def _report(self, item: pytest.Item, text: str) -> None:
        if self.mode == "fail":
            pytest.fail(text, pytrace=False)
        item.warn(FdLeakWarning(text))
