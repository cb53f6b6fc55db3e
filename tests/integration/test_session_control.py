"""Controlling a session end to end: the real daemon, real agent processes, real HTTP on 127.0.0.1.

Each control endpoint does what it says to the agent's processes: pause really stops every member,
resume runs them again, stop really ends them, nothing survives a stop or a delete (children,
grandchildren, an escapee in its own session), and a finished session refuses control.
"""

from __future__ import annotations

import os
import re
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from actors.process import find_marked
from tests.harness import command_task, wait_status
from tests.integration.session_helpers import (  # noqa: F401 (fixtures c, d)
    API,
    DEADLINE,
    TERMINAL,
    create,
    ended,
    events_until,
    messages,
    sessions_client,
    sessions_daemon,
    view,
)

# Three kinds of descendants: a child, a grandchild (child of a child) and an escapee that left the
# agent's session and process group with setsid and closes its stdio (so the session's end cannot wait
# for it to let go of the agent's pipes). The escapee and the agent report their pids.
FAMILY = ('sh -c "exec sleep 300" & sh -c "sleep 300 & wait" & '
          'setsid sh -c "echo escapee \\$\\$; exec sleep 300 <&- >&- 2>&-" & sleep 0.01; echo agent $$; wait')
BUSY = "yes > /dev/null & yes > /dev/null; wait"
# Exits 0 on SIGTERM (after saying so); prints "ready" once the handler is installed.
GRACEFUL = ("import signal, sys, time\n"
            "def bye(*_):\n    print('terminating', flush=True)\n    sys.exit(0)\n"
            "signal.signal(signal.SIGTERM, bye)\n"
            "print('ready', flush=True)\n"
            "while True:\n    time.sleep(1)\n")


# -- helpers ---------------------------------------------------------------------------------------

def start(c: httpx.Client, script: str, wanted: str = "running") -> str:
    sid = create(c, command_task(["sh", "-c", script]))["id"]
    wait_status(c, sid, wanted)
    return sid


def wait_lines(c: httpx.Client, sid: str, *prefixes: str) -> dict[str, int]:
    """Wait for log lines ``"<prefix> <pid>"``; return prefix → pid."""
    def found(events: list[dict[str, Any]]) -> dict[str, int]:
        return {m.split()[0]: int(m.split()[1]) for m in messages(events) if m.split()[0] in prefixes}

    return found(events_until(c, sid, lambda ev: len(found(ev)) == len(prefixes)))


def poll(predicate: Callable[[], Any], what: str, timeout: float = DEADLINE) -> Any:
    """psutil and /proc notify nothing: poll them, under a deadline."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := predicate():
            return value
        time.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


def tree(pid: int) -> list[psutil.Process]:
    try:
        leader = psutil.Process(pid)
        return [leader, *leader.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def alive(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def survivors(sid: str, recorded: list[psutil.Process]) -> list[psutil.Process]:
    """Processes of a session still alive: recorded ones, and any carrying its marker."""
    return [p for p in recorded if alive(p)] + find_marked(sid)


def family(c: httpx.Client) -> tuple[str, list[psutil.Process]]:
    """A running FAMILY session and every process of it (child, grandchild, escapee)."""
    sid = create(c, command_task(["sh", "-c", FAMILY]))["id"]
    pids = wait_lines(c, sid, "agent", "escapee")
    agent = pids["agent"]
    assert agent == view(c, sid)["pid"]
    # agent, child (exec sleep), sh + grandchild sleep, escapee (exec sleep)
    members = poll(lambda: len(m := find_marked(sid)) >= 5 and m, "the family")
    assert os.getsid(pids["escapee"]) == os.getpgid(pids["escapee"]) == pids["escapee"] != agent
    assert any(p.ppid() != agent and psutil.Process(p.ppid()).ppid() == agent for p in members)  # grandchild
    return sid, members


# -- control endpoints -----------------------------------------------------------------------------

def test_every_control_endpoint_end_to_end(c: httpx.Client) -> None:
    created = c.post(f"{API}/tasks", json=command_task(
        ["sh", "-c", 'echo started; while read line; do echo "got $line"; done; exec sleep 300']))
    assert created.status_code == 201
    sid = created.json()["id"]
    assert created.headers["Location"] == f"{API}/sessions/{sid}"
    assert created.json()["links"] == {"self": f"{API}/sessions/{sid}", "events": f"{API}/sessions/{sid}/events",
                                       "logs": f"{API}/sessions/{sid}/logs"}
    wait_status(c, sid, "running")
    events_until(c, sid, lambda ev: "started" in messages(ev))

    info = c.get(f"{API}/sessions/{sid}/info").json()
    assert info["id"] == sid
    assert info["status"] == "running"
    assert info["fleet"] == {"leader": sid, "followers": []}
    assert info["endpoints"]["events"] == f"{API}/sessions/{sid}/events"

    prompt = c.post(f"{API}/sessions/{sid}/prompt", json={"prompt": [{"type": "text", "text": "hello"}]})
    assert prompt.status_code == 202, prompt.text
    assert prompt.json()["sessionId"] == sid
    assert prompt.json()["accepted"] is True
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", prompt.json()["ts"])
    assert c.post(f"{API}/sessions/{sid}/prompt", json={"message": "legacy"}).status_code == 202
    events_until(c, sid, lambda ev: {"got hello", "got legacy"} <= set(messages(ev)))
    logs = c.get(f"{API}/sessions/{sid}/logs", params={"tail": 10}).json()
    assert logs["items"] == logs["logs"]
    assert logs["nextPage"] is None
    # Oldest first; each prompt is logged as the user's line before the agent's answer to it.
    assert [line["message"] for line in logs["logs"]] == ["started", "hello", "got hello", "legacy", "got legacy"]
    assert [line.get("role") for line in logs["logs"]] == [None, "user", None, "user", None]
    assert all({"level", "message", "ts"} <= set(line) for line in logs["logs"])
    assert [line["message"] for line in c.get(f"{API}/sessions/{sid}/logs?tail=1").json()["logs"]] == ["got legacy"]

    paused = c.post(f"{API}/sessions/{sid}/pause")
    assert paused.status_code == 200
    assert paused.json()["status"] == "paused"
    assert c.post(f"{API}/sessions/{sid}/pause").status_code == 409
    blocked = c.post(f"{API}/sessions/{sid}/prompt", json={"message": "while paused"})
    assert blocked.status_code == 409
    assert blocked.headers["Content-Type"].startswith("application/problem+json")
    resumed = c.post(f"{API}/sessions/{sid}/resume")
    assert resumed.status_code == 200
    assert resumed.json()["status"] == "running"
    assert c.post(f"{API}/sessions/{sid}/resume").status_code == 409

    stopped = c.post(f"{API}/sessions/{sid}/stop", json={"reason": "done testing"})
    assert stopped.status_code == 202
    assert stopped.json()["status"] == "accepted"
    final = wait_status(c, sid, "stopped")
    assert final["endedAt"] is not None
    assert final["error"] is None
    status_events = [e for e in events_until(c, sid, ended("stopped")) if e["type"] == "status"]
    assert [e["status"] for e in status_events] == ["provisioning", "running", "pausing", "paused", "resuming",
                                                   "running", "stopping", "stopped"]
    assert status_events[-2]["reason"] == "done testing"

    for verb in ("pause", "resume", "stop"):
        assert c.post(f"{API}/sessions/{sid}/{verb}").status_code == 409, verb
    gone = c.post(f"{API}/sessions/{sid}/prompt", json={"message": "too late"})
    assert gone.status_code == 410
    assert gone.json()["status"] == 410

    deleted = c.delete(f"{API}/sessions/{sid}")
    assert deleted.status_code == 204
    assert deleted.content == b""
    assert c.get(f"{API}/sessions/{sid}").status_code == 404
    assert c.delete(f"{API}/sessions/{sid}").status_code == 404
    assert not Path(final["workspace"]["path"]).exists()


def test_pause_stops_every_member_and_resume_runs_them_again(c: httpx.Client) -> None:
    sid = start(c, BUSY)
    pid = view(c, sid)["pid"]
    members = poll(lambda: len(t := tree(pid)) == 3 and all(p.name() == "yes" for p in t[1:]) and t,
                   "the agent and its two busy children")
    assert c.post(f"{API}/sessions/{sid}/pause").json()["status"] == "paused"
    # Stopped as soon as the API says paused, not eventually.
    assert [p.status() for p in members] == [psutil.STATUS_STOPPED] * 3
    before = [p.cpu_times() for p in members]
    time.sleep(1.0)  # a measurement window, not a synchronisation: no CPU may be used in it
    assert [p.cpu_times() for p in members] == before
    assert [p.status() for p in members] == [psutil.STATUS_STOPPED] * 3

    assert c.post(f"{API}/sessions/{sid}/resume").json()["status"] == "running"
    poll(lambda: all(p.cpu_times().user + p.cpu_times().system > b.user + b.system
                     for p, b in zip(members[1:], before[1:], strict=True)), "the children to run again")
    assert psutil.STATUS_STOPPED not in {p.status() for p in members}
    assert c.delete(f"{API}/sessions/{sid}").status_code == 204
    assert not any(alive(p) for p in members)


def test_stop_of_a_paused_agent_that_handles_sigterm_takes_no_grace_period(c: httpx.Client) -> None:
    sid = create(c, command_task([sys.executable, "-c", GRACEFUL]))["id"]
    events_until(c, sid, lambda ev: "ready" in messages(ev))
    assert c.post(f"{API}/sessions/{sid}/pause").json()["status"] == "paused"
    started = time.monotonic()
    assert c.post(f"{API}/sessions/{sid}/stop", content=b"").status_code == 202
    final = wait_status(c, sid, TERMINAL)
    took = time.monotonic() - started
    assert final["status"] == "stopped"
    assert took < 0.5, f"stop took {took:.2f}s (the grace period is 10 s)"
    assert "terminating" in messages(events_until(c, sid, ended("stopped")))
    assert final["exitCode"] == 0  # it exited by itself: SIGTERM reached it, SIGKILL was not needed


@pytest.mark.parametrize("how", ["stop", "delete"])
def test_no_process_survives(c: httpx.Client, how: str) -> None:
    sid, members = family(c)
    if how == "stop":
        assert c.post(f"{API}/sessions/{sid}/stop").status_code == 202
        wait_status(c, sid, "stopped")
        assert survivors(sid, members) == []
        assert c.delete(f"{API}/sessions/{sid}").status_code == 204
    else:
        assert c.delete(f"{API}/sessions/{sid}").status_code == 204
    assert survivors(sid, members) == []


@pytest.mark.slow
def test_fifty_create_stop_delete_cycles_leave_no_process_behind(c: httpx.Client) -> None:
    # The escapee lets go of the agent's pipes: the session's end cannot wait for its output to close.
    script = "sleep 300 & setsid sh -c 'echo escaped $$; exec sleep 300 <&- >&- 2>&-' & wait"
    recorded: dict[str, list[psutil.Process]] = {}
    for _ in range(50):
        sid = create(c, command_task(["sh", "-c", script]))["id"]
        wait_lines(c, sid, "escaped")
        recorded[sid] = find_marked(sid)
        assert len(recorded[sid]) == 3
        assert c.post(f"{API}/sessions/{sid}/stop", content=b"null",
                      headers={"Content-Type": "application/json"}).status_code == 202
        wait_status(c, sid, "stopped")
        assert c.delete(f"{API}/sessions/{sid}").status_code == 204
    left = {sid: survivors(sid, procs) for sid, procs in recorded.items()}
    assert {sid: procs for sid, procs in left.items() if procs} == {}


@pytest.mark.parametrize("body", [None, b"", b"null", b"{}"], ids=["no-body", "empty", "null", "object"])
def test_control_bodies_may_be_empty_or_null(c: httpx.Client, body: bytes | None) -> None:
    """The browser sends an empty JSON body on stop/pause/resume/DELETE, the Rust client ``null``."""
    kwargs: dict[str, Any] = {} if body is None else {"content": body,
                                                      "headers": {"Content-Type": "application/json"}}
    sid = start(c, "exec sleep 300")
    assert c.post(f"{API}/sessions/{sid}/pause", **kwargs).status_code == 200
    assert c.post(f"{API}/sessions/{sid}/resume", **kwargs).status_code == 200
    assert c.post(f"{API}/sessions/{sid}/stop", **kwargs).json()["status"] == "accepted"
    wait_status(c, sid, "stopped")
    assert c.request("DELETE", f"{API}/sessions/{sid}", **kwargs).status_code == 204


def test_a_finished_session_refuses_control(c: httpx.Client) -> None:
    sid = start(c, "exit 0", "completed")
    for verb in ("pause", "resume", "stop"):
        r = c.post(f"{API}/sessions/{sid}/{verb}")
        assert r.status_code == 409, verb
        assert r.headers["Content-Type"].startswith("application/problem+json")
        assert "completed" in r.json()["detail"]
    r = c.post(f"{API}/sessions/{sid}/prompt", json={"message": "anyone there?"})
    assert r.status_code == 410
    assert r.json()["status"] == 410
