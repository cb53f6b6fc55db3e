"""The unit files say what operations.md promises; systemd-analyze verifies them where it exists."""

from __future__ import annotations

import configparser
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.harness import REPO

UNITS = REPO / "systemd"


def _parse(path: Path) -> configparser.RawConfigParser:
    parser = configparser.RawConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read(path)
    return parser


@pytest.mark.parametrize("name", ["ah-harbor.service", "ah-harbor-system.service"])
def test_service_units_have_the_promised_directives(name: str) -> None:
    service = _parse(UNITS / name)["Service"]
    assert service["Type"] == "notify"
    assert int(service["WatchdogSec"]) > 0
    assert service["KillMode"] == "mixed"
    assert service["Restart"] == "on-failure"
    assert int(service["LimitNOFILE"]) >= 65536
    assert "ah agent access-point" in service["ExecStart"]


def test_socket_unit_listens_on_loopback() -> None:
    socket_section = _parse(UNITS / "ah-harbor.socket")["Socket"]
    assert socket_section["ListenStream"].startswith("127.0.0.1:")


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_systemd_analyze_verify_accepts_the_units(tmp_path: Path) -> None:
    unit = tmp_path / "ah-harbor.service"
    text = (UNITS / "ah-harbor.service").read_text().replace("%h/.local/bin/ah", shutil.which("true") or "/bin/true")
    unit.write_text(text)
    result = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_ah_service_install_writes_the_user_unit(tmp_path: Path) -> None:
    import os
    import sys

    env = {**os.environ, "XDG_CONFIG_HOME": str(tmp_path)}
    r = subprocess.run([sys.executable, "-m", "harbor.cli", "service", "install", "--no-enable"],
                       capture_output=True, text=True, env=env, timeout=60)
    assert r.returncode == 0, r.stderr
    unit = tmp_path / "systemd" / "user" / "ah-harbor.service"
    service = _parse(unit)["Service"]
    assert service["Type"] == "notify"
    assert service["ExecStart"].split()[0].endswith("ah") or "harbor.cli" in service["ExecStart"]
