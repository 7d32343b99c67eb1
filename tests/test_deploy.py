"""The deployment files under deploy/: shipped in the sdist, accepted by the tools that
load them (systemd-analyze verify, promtool check and test rules).

Nothing is built here: the sdist's own list is checked by scripts/wheel-test.sh, this
checks that pyproject's include covers every file. The running Prometheus that loads
the rules is tests/test_prom_e2e.py's.
"""

from __future__ import annotations

import glob
import importlib
import os
import pathlib
import shutil
import subprocess
import sys
from typing import Any

import pytest

# The same on every kernel: the kernel-test guests leave it out (pyproject's markers).
pytestmark = pytest.mark.userland

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEPLOY = os.path.join(ROOT, "deploy")
SERVICE = os.path.join(DEPLOY, "systemd", "kcmp-rs-metrics.service")
TIMER = os.path.join(DEPLOY, "systemd", "kcmp-rs-metrics.timer")
RULES = os.path.join(DEPLOY, "prometheus", "kcmp_rs-rules.yml")
RULES_TEST = os.path.join(DEPLOY, "prometheus", "kcmp_rs-rules.test.yml")
SHIPPED = [SERVICE, TIMER, RULES, RULES_TEST]
TIMEOUT = 60.0


def _pyproject() -> dict[str, Any]:
    # tomllib is 3.11+; before, mypy's own dependency tomli reads the same TOML.
    toml = importlib.import_module("tomllib" if sys.version_info >= (3, 11) else "tomli")
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        doc: dict[str, Any] = toml.load(f)
    return doc


def _all_files(top: str) -> set[str]:
    return {os.path.join(d, name) for d, _, names in os.walk(top) for name in names}


def _covered(entries: list[dict[str, str]]) -> set[str]:
    return {
        os.path.normpath(path)
        for entry in entries
        for path in glob.glob(os.path.join(ROOT, entry["path"]), recursive=True)
        if os.path.isfile(path)
    }


def test_every_deployment_file_is_in_the_sdist_only() -> None:
    include = [
        entry if isinstance(entry, dict) else {"path": entry}
        for entry in _pyproject()["tool"]["maturin"]["include"]
    ]
    files = _all_files(DEPLOY)
    assert set(SHIPPED) <= files
    sdist = _covered([e for e in include if e.get("format") == "sdist"])
    assert files <= sdist, sorted(files - sdist)
    # In the wheel they would land in site-packages, where no one looks for a unit file.
    assert not files & _covered([e for e in include if e.get("format") != "sdist"])


def _section(path: str, name: str) -> dict[str, str]:
    """One section of a unit file as key -> value (the last assignment wins, as in systemd;
    no key of ours is a list)."""
    values: dict[str, str] = {}
    current = None
    with open(path) as f:
        for raw in f:
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            if line.startswith("["):
                current = line.strip("[]")
            elif current == name:
                key, _, value = line.partition("=")
                values[key] = value
    return values


def test_the_service_writes_debians_textfile_directory_as_root_unhidden() -> None:
    service = _section(SERVICE, "Service")
    assert service["Type"] == "oneshot"
    assert service["ExecStart"] == (
        "/usr/bin/env kcmp-rs metrics --textfile /var/lib/prometheus/node-exporter"
    )
    assert service["ReadWritePaths"] == "/var/lib/prometheus/node-exporter"
    assert service["IOSchedulingClass"] == "idle"
    assert int(service["Nice"]) > 0
    # Every process and its fds must stay visible and readable by root.
    assert "ProtectProc" not in service and "ProcSubset" not in service
    assert service.get("User", "root") == "root"
    caps = set(service["CapabilityBoundingSet"].split())
    assert {"CAP_SYS_PTRACE", "CAP_DAC_READ_SEARCH"} <= caps
    # Any restriction of namespaces forbids setns() into a process's network namespace.
    assert "RestrictNamespaces" not in service and "PrivateNetwork" not in service


def test_the_timer_runs_the_service_every_minute() -> None:
    timer = _section(TIMER, "Timer")
    assert timer == {"OnBootSec": "1min", "OnUnitActiveSec": "60s", "AccuracySec": "5s"}
    assert _section(TIMER, "Install") == {"WantedBy": "timers.target"}


def _tool(name: str, package: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} is not installed (Debian: {package}; scripts/setup-*.sh installs it)")
    return path


def _run(*cmd: str, cwd: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        cmd, capture_output=True, text=True, timeout=TIMEOUT, check=False, cwd=cwd
    )


def test_systemd_analyze_verify_accepts_the_units() -> None:
    tool = _tool("systemd-analyze", "systemd")
    # --man=no: the man page named in Documentation= comes with the wheel, not here.
    done = _run(tool, "verify", "--man=no", SERVICE, TIMER)
    # verify exits 0 after an unknown key or a bad value too: only its silence says so.
    assert (done.returncode, done.stderr, done.stdout) == (0, "", "")


def test_promtool_accepts_the_rules_and_their_unit_test_passes() -> None:
    promtool = _tool("promtool", "prometheus")
    check = _run(promtool, "check", "rules", RULES)
    assert check.returncode == 0, check.stdout + check.stderr
    assert "SUCCESS: 4 rules found" in check.stdout
    # The unit test names the rules file relative to itself.
    tested = _run(promtool, "test", "rules", RULES_TEST, cwd=os.path.dirname(RULES_TEST))
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "SUCCESS" in tested.stdout


def test_promtool_test_rules_fails_when_the_escape_alert_is_broken(tmp_path: pathlib.Path) -> None:
    """The unit test can fail: with KcmpRsEscape's threshold raised, it does."""
    promtool = _tool("promtool", "prometheus")
    with open(RULES) as f:
        rules = f.read()
    broken = rules.replace('severity=~"high|medium"}) > 0', 'severity=~"high|medium"}) > 1')
    assert broken != rules
    (tmp_path / "kcmp_rs-rules.yml").write_text(broken)
    shutil.copy(RULES_TEST, tmp_path)
    tested = _run(promtool, "test", "rules", "kcmp_rs-rules.test.yml", cwd=str(tmp_path))
    assert tested.returncode == 1
    assert "alertname: KcmpRsEscape" in tested.stdout + tested.stderr
