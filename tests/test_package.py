"""The package as installed: its version matches Cargo.toml (and the installed
metadata), and importing it off Linux is an ImportError that names Linux and loads no
native code.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import kcmp_rs
import pytest

# ---- version ----


def test_version_matches_cargo_toml() -> None:
    cargo = (Path(__file__).resolve().parent.parent / "Cargo.toml").read_text()
    package = cargo.split("[package]", 1)[1].split("\n[", 1)[0]
    match = re.search(r'^version\s*=\s*"([^"]+)"', package, re.M)
    assert match is not None
    assert kcmp_rs.__version__ == match.group(1)
    from importlib.metadata import PackageNotFoundError, version

    try:
        installed = version("kcmp-rs")
    except PackageNotFoundError:  # run from a source tree on PYTHONPATH: no metadata
        return
    assert installed == match.group(1)


# ---- import off Linux ----


@pytest.mark.parametrize("platform", ["darwin", "win32", "freebsd14"])
def test_import_off_linux_is_an_importerror(platform: str) -> None:
    code = (
        "import sys\n"
        f"sys.platform = {platform!r}\n"
        "try:\n"
        "    import kcmp_rs\n"
        "except ImportError as e:\n"
        "    print('ImportError:', e)\n"
        "    print('native loaded:', 'kcmp_rs._native' in sys.modules)\n"
        "else:\n"
        "    print('imported')\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    ).stdout
    assert out.startswith("ImportError:"), out
    assert "Linux" in out and platform in out, out
    assert "native loaded: False" in out, out


# ---- KCMP_RS_THREADS ----


@pytest.mark.parametrize(
    ("value", "limit"), [(None, 0), ("", 0), ("  ", 0), ("1", 1), (" 3 ", 3), ("64", 64)]
)
def test_thread_limit_values(value: str | None, limit: int) -> None:
    from kcmp_rs import _config

    environ = {} if value is None else {_config.THREADS: value}
    assert _config.thread_limit_from_environment(environ) == limit


@pytest.mark.parametrize("value", ["0", "-1", "1.5", "two", "1e3"])
def test_a_thread_limit_not_understood_warns_and_limits_nothing(value: str) -> None:
    from kcmp_rs import _config

    with pytest.warns(RuntimeWarning) as caught:
        assert _config.thread_limit_from_environment({_config.THREADS: value}) == 0
    assert [str(w.message) for w in caught] == [
        f"KCMP_RS_THREADS={value!r} is not a positive integer, so passes use every CPU "
        "this process may run on"
    ]


_ONE_THREAD_SCAN = """
import os, sys, threading
sys.path.insert(0, sys.argv[1])
import kcmp_rs
from _family import build_family
seen = [0]
stop = threading.Event()
def watch():
    while not stop.is_set():
        seen[0] = max(seen[0], len(os.listdir("/proc/self/task")))
with build_family(24, 300) as family:  # 7,200 fds: past the scan's sharding threshold
    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        for _ in range(5):
            result = kcmp_rs.scan(family.pids)
    finally:
        stop.set()
        watcher.join()
print(seen[0], result.processes_read)
"""


def test_kcmp_rs_threads_1_runs_each_pass_on_one_thread() -> None:
    """With KCMP_RS_THREADS=1 the scan classifies and describes on the calling thread
    alone: a watcher sampling the process's tasks never sees a third one."""
    if kcmp_rs._native.set_thread_limit(0) < 2:
        pytest.skip("this process may run on one CPU only: there is nothing to limit")
    tests = str(Path(__file__).resolve().parent)
    env = {**os.environ, "KCMP_RS_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, "-c", _ONE_THREAD_SCAN, tests],
        env=env, capture_output=True, text=True, timeout=300, check=True,
    )  # fmt: skip
    tasks, read = map(int, done.stdout.split())
    assert read == 24
    assert tasks == 2, done.stdout  # the main thread and the watcher
