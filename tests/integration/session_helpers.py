"""Shared by the session tests (``test_session_control``, ``test_session_creation``,
``test_session_validation``): the daemon they run against, and creating a session, reading it back
and following its event stream (never sleeping).

The fixtures are named ``d`` (the module's daemon) and ``c`` (a client of it); a test module imports
``sessions_daemon`` and ``sessions_client`` to have them, and gets a daemon of its own (module scope).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from tests.harness import DaemonProcess, read_sse

API = "/api/v1"
TERMINAL = {"stopped", "completed", "failed", "cancelled"}
DEADLINE = 20.0


@pytest.fixture(scope="module", name="d")
def sessions_daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonProcess]:
    """The module's daemon: command agent allowed, a long stop grace (a stop that waits it out shows),
    and claude-code pointed at a binary that does not exist (unavailable, whatever PATH holds)."""
    proc = DaemonProcess(tmp_path_factory.mktemp("sessions") / "data", "--allow-command-agent",
                         "--max-concurrent-tasks", "50",
                         env={"AH_STOP_GRACE_SECONDS": "10",
                              "AH_AGENT_BINARIES": json.dumps({"claude-code": "/nonexistent/claude"})}).start()
    yield proc
    proc.stop()


@pytest.fixture(name="c")
def sessions_client(d: DaemonProcess) -> Iterator[httpx.Client]:
    with d.client() as client:
        yield client


def create(c: httpx.Client, body: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    r = c.post(f"{API}/tasks", json=body, **kwargs)
    assert r.status_code == 201, r.text
    return r.json()


def events_until(c: httpx.Client, sid: str, done: Callable[[list[dict[str, Any]]], bool],
                 timeout: float = DEADLINE) -> list[dict[str, Any]]:
    """Follow the session's SSE stream (history first) until ``done(events so far)``."""
    seen: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    with c.stream("GET", f"{API}/sessions/{sid}/events", headers={"Accept": "text/event-stream"},
                  timeout=httpx.Timeout(10, read=timeout)) as r:
        assert r.status_code == 200
        for ident, _, data in read_sse(r):
            if ident is not None:
                seen.append(data)
            if done(seen):
                return seen
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out following {sid}: {seen}")
    raise AssertionError(f"the stream of {sid} ended first: {seen}")


def messages(events: list[dict[str, Any]]) -> list[str]:
    return [e["message"] for e in events if e["type"] == "log"]


def view(c: httpx.Client, sid: str) -> dict[str, Any]:
    r = c.get(f"{API}/sessions/{sid}")
    assert r.status_code == 200, r.text
    return r.json()


def ended(status: str) -> Callable[[list[dict[str, Any]]], bool]:
    """For :func:`events_until`: the session's status event ``status`` has come."""
    return lambda events: any(e["type"] == "status" and e["status"] == status for e in events)
