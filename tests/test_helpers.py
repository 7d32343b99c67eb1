"""The test helpers themselves (``_helpers.py``): a spawned child's data comes back and
its exit status is seen; ``run_in_child`` reports exit codes and exceptions."""

from __future__ import annotations

import os
import signal

import pytest
from _helpers import run_in_child, spawned


def test_spawned_child_reports_and_exits_cleanly() -> None:
    """The helpers themselves: data comes back, the exit status is seen."""
    with spawned(lambda: {"pid": os.getpid()}) as child:
        assert child.data == {"pid": child.pid}
        assert child.status is None
    assert child.exitcode == 0
    with pytest.raises(AssertionError, match="setup failed"), spawned(lambda: 1 // 0):
        pass
    with spawned(expect_exit=None) as child:
        child.kill(signal.SIGTERM)
    assert child.killed_by == signal.SIGTERM
    result = run_in_child(os._exit, 3)
    assert result.exitcode == 3 and not result.returned
    failed = run_in_child(int, "x")
    assert type(failed.raised()) is ValueError and failed.exitcode == 1
