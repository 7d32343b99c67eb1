"""Fixtures shared by the test modules (helpers themselves live in ``_helpers.py``).

- ``spawn``: starts children with ``_helpers.spawned``; all are released, reaped and
  their exit status checked at teardown.
- ``fd_leak_check``: fails the test if it leaves this process with fds it did not have.
- ``pipe``: a pipe ``(read end, write end)`` in this process, closed after the test.
- ``me``: this process's pid.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from _helpers import ChildProcess, Spawn, fd_snapshot, spawned, zombie_child

# ``Spawn`` is defined in _helpers; test_scan.py and test_cli.py import it from here.
__all__ = ["Spawn", "fd_leak_check", "me", "pipe", "spawn"]


@pytest.fixture
def spawn() -> Iterator[Spawn]:
    """Starts a child running ``setup`` (see ``_helpers.spawned``); it lives until the
    test ends, then it is released and reaped, and with ``expect_exit`` an int (the
    default 0), its exit code is checked."""
    with contextlib.ExitStack() as stack:

        def start(
            setup: Callable[[], Any] | None = None, *, expect_exit: int | None = 0
        ) -> ChildProcess:
            return stack.enter_context(spawned(setup, expect_exit=expect_exit))

        yield start


@pytest.fixture
def fd_leak_check() -> Iterator[None]:
    """Asserts the test closed every fd it opened in this process."""
    before = fd_snapshot()
    yield
    after = fd_snapshot()
    assert after - before == set(), f"fds leaked: {sorted(after - before)}"


@pytest.fixture
def pipe() -> Iterator[tuple[int, int]]:
    """A pipe of this process, as ``(r, w)``; children forked during the test inherit it."""
    r, w = os.pipe()
    yield r, w
    os.close(r)
    os.close(w)


@pytest.fixture
def zombie() -> Iterator[int]:
    """A child that has exited and stays unreaped for the test (reaped at teardown)."""
    with zombie_child() as pid:
        yield pid


@pytest.fixture
def me() -> int:
    """This process's pid."""
    return os.getpid()
