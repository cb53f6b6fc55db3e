"""Shared fixtures: a real daemon per test module (or per test where a test needs its own)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness import DaemonProcess

pytest_plugins = ["tests.browser_fixtures"]


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonProcess]:
    """One daemon for the module, with the command agent allowed (tests run real commands)."""
    proc = DaemonProcess(tmp_path_factory.mktemp("daemon") / "data", "--allow-command-agent",
                         "--max-concurrent-tasks", "50").start()
    yield proc
    proc.stop()


@pytest.fixture
def fresh_daemon(tmp_path: Path) -> Iterator[DaemonProcess]:
    proc = DaemonProcess(tmp_path / "data", "--allow-command-agent")
    yield proc
    if proc.proc is not None and proc.proc.poll() is None:
        proc.stop()
