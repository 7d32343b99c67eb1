"""The package as installed: its version matches Cargo.toml (and the installed
metadata), and importing it off Linux is an ImportError that names Linux and loads no
native code.
"""

from __future__ import annotations

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
