"""Sessions end to end: the real daemon, real agent processes, real HTTP on 127.0.0.1.

What a user of the API notices: each control endpoint does what it says to the agent's processes
(pause really stops every member, stop really ends them, nothing survives a stop or a delete), the
scenario agent really works in its workspace, admission runs sessions in order under the limit,
fan-out creates what was asked, idempotent retries create nothing new, and every bad request gets a
Problem+JSON naming the field.
"""

from __future__ import annotations

import json
import os
import re
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from actors.process import find_marked
from tests.harness import DaemonProcess, command_task, read_sse, scenario_task, wait_status

API = "/api/v1"
TERMINAL = {"stopped", "completed", "failed", "cancelled"}
DEADLINE = 20.0
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


@pytest.fixture(scope="module")
def d(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonProcess]:
    """The module's daemon: command agent allowed, a long stop grace (a stop that waits it out shows),
    and claude-code pointed at a binary that does not exist (unavailable, whatever PATH holds)."""
    proc = DaemonProcess(tmp_path_factory.mktemp("sessions") / "data", "--allow-command-agent",
                         "--max-concurrent-tasks", "50",
                         env={"AH_STOP_GRACE_SECONDS": "10",
                              "AH_AGENT_BINARIES": json.dumps({"claude-code": "/nonexistent/claude"})}).start()
    yield proc
    proc.stop()


@pytest.fixture
def c(d: DaemonProcess) -> Iterator[httpx.Client]:
    with d.client() as client:
        yield client


# -- helpers ---------------------------------------------------------------------------------------

def create(c: httpx.Client, body: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    r = c.post(f"{API}/tasks", json=body, **kwargs)
    assert r.status_code == 201, r.text
    return r.json()


def start(c: httpx.Client, script: str, wanted: str = "running") -> str:
    sid = create(c, command_task(["sh", "-c", script]))["id"]
    wait_status(c, sid, wanted)
    return sid


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


def wait_lines(c: httpx.Client, sid: str, *prefixes: str) -> dict[str, int]:
    """Wait for log lines ``"<prefix> <pid>"``; return prefix → pid."""
    def found(events: list[dict[str, Any]]) -> dict[str, int]:
        return {m.split()[0]: int(m.split()[1]) for m in messages(events) if m.split()[0] in prefixes}

    return found(events_until(c, sid, lambda ev: len(found(ev)) == len(prefixes)))


def view(c: httpx.Client, sid: str) -> dict[str, Any]:
    r = c.get(f"{API}/sessions/{sid}")
    assert r.status_code == 200, r.text
    return r.json()


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


def ended(status: str) -> Callable[[list[dict[str, Any]]], bool]:
    """For :func:`events_until`: the session's status event ``status`` has come."""
    return lambda events: any(e["type"] == "status" and e["status"] == status for e in events)


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


# -- the scenario agent ----------------------------------------------------------------------------

SCENARIO = {
    "name": "integration",
    "repo": {"init": True, "files": [{"path": "app.py", "contents": "print('v1')\n"}]},
    "timeline": [
        {"llmResponse": [{"think": [[200, "Reading app.py first"]]},
                         {"assistant": [[100, "I will record the version and take notes"]]}]},
        {"agentToolUse": {"toolName": "run_cmd", "args": {"cmd": "python3 app.py > version.txt && cat version.txt"}}},
        {"agentEdits": {"path": "NOTES.md", "linesAdded": 3, "linesRemoved": 0}},
        {"baseTimeDelta": 100},
        {"userInputs": [{"relativeTime": 50, "input": "also write tests"}]},
        {"think": [[100, "Done"]]},
        {"complete": True},
    ],
}


def test_the_scenario_agent_really_works_and_completes(c: httpx.Client) -> None:
    sid = create(c, scenario_task(SCENARIO, speed=50))["id"]
    events = events_until(c, sid, ended("completed"))
    final = view(c, sid)
    assert final["status"] == "completed"
    assert final["exitCode"] == 0
    by_type = {t: [e for e in events if e["type"] == t] for t in ("thought", "log", "tool_use", "tool_result",
                                                                 "file_edit")}
    assert [e["thought"] for e in by_type["thought"]] == ["Reading app.py first", "Done"]
    said = [e for e in events if e["type"] == "message"]
    assert [(e["role"], e["message"]) for e in said] == [("assistant", "I will record the version and take notes")]
    assert any(e.get("role") == "user" and e["message"] == "also write tests" for e in by_type["log"])
    assert by_type["tool_use"][0]["tool_name"] == "run_cmd"
    assert "v1" in by_type["tool_result"][0]["tool_output"]  # the command's real output
    edit = by_type["file_edit"][0]
    assert (edit["file_path"], edit["lines_added"], edit["lines_removed"]) == ("NOTES.md", 3, 0)
    workspace = Path(final["workspace"]["path"])
    assert (workspace / "version.txt").read_text() == "v1\n"  # the command really ran, in the workspace
    assert len((workspace / "NOTES.md").read_text().splitlines()) == 3  # the edit really happened
    assert c.delete(f"{API}/sessions/{sid}").status_code == 204


@pytest.mark.parametrize(("step", "code"), [({"complete": True}, 3), ({"fail": {"exitCode": 4, "message": "no"}}, 4)])
def test_the_scenario_agent_exits_with_the_scenario_exit_code(c: httpx.Client, step: dict[str, Any],
                                                              code: int) -> None:
    scenario = {"timeline": [{"think": [[10, "hm"]]}, step], "expect": {"exitCode": 3}}
    sid = create(c, scenario_task(scenario, speed=50))["id"]
    final = wait_status(c, sid, TERMINAL)
    assert final["status"] == "failed"
    assert final["exitCode"] == code
    assert f"exited with code {code}" in final["error"]


def test_an_injected_prompt_reaches_the_scenario_agent(c: httpx.Client) -> None:
    waiting = {"timeline": [{"think": [[600_000, "Waiting for instructions"]]}, {"complete": True}]}
    sid = create(c, scenario_task(waiting, speed=1))["id"]
    events_until(c, sid, lambda ev: any(e["type"] == "log" for e in ev))  # playing (and reading stdin)
    assert c.post(f"{API}/sessions/{sid}/prompt", json={"prompt": [{"type": "text", "text": "use tabs"}]}
                  ).status_code == 202
    events = events_until(c, sid, lambda ev: any(e.get("thought") == "New instruction from the user: use tabs"
                                                 for e in ev))
    users = [e for e in events if e["type"] == "log" and e.get("role") == "user" and e["message"] == "use tabs"]
    assert [e.get("source") for e in users] == ["api", None]  # our record of it, then the agent's echo
    assert c.post(f"{API}/sessions/{sid}/stop").status_code == 202
    assert wait_status(c, sid, TERMINAL)["status"] == "stopped"


# -- admission, fan-out, idempotency -----------------------------------------------------------------

class Feed:
    """``GET /api/v1/events`` read in a thread; tests wait for what it has delivered."""

    def __init__(self, daemon: DaemonProcess) -> None:
        self.items: list[dict[str, Any]] = []
        self._changed = threading.Condition()
        self._client = daemon.client()
        self._response = self._client.send(self._client.build_request("GET", f"{API}/events"), stream=True)
        assert self._response.status_code == 200
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        try:
            for _, _, data in read_sse(self._response):
                with self._changed:
                    self.items.append(data)
                    self._changed.notify_all()
        except httpx.HTTPError:
            pass  # closed by close()

    def statuses(self, sid: str) -> list[str]:
        return [i["status"] for i in self.items if i.get("sessionId") == sid and i["type"] == "status"]

    def wait(self, predicate: Callable[[], bool], what: str, timeout: float = DEADLINE) -> None:
        with self._changed:
            if not self._changed.wait_for(predicate, timeout):
                raise AssertionError(f"the feed never showed {what}: {self.items}")

    def close(self) -> None:
        self._response.close()
        self._client.close()
        self._thread.join(5)


def test_at_most_max_concurrent_tasks_run_in_submission_order(tmp_path: Path) -> None:
    daemon = DaemonProcess(tmp_path / "data", "--allow-command-agent", "--max-concurrent-tasks", "2").start()
    feed = Feed(daemon)
    try:
        with daemon.client() as c:
            # Each agent blocks until it reads a line: the test releases it with a prompt.
            ids = [create(c, command_task(["sh", "-c", "read line; echo released"]))["id"] for _ in range(5)]

            def running() -> list[str]:
                return [s for s in ids if "running" in feed.statuses(s) and not TERMINAL & set(feed.statuses(s))]

            feed.wait(lambda: running() == ids[:2], "the first two running")
            assert [view(c, s)["status"] for s in ids] == ["running", "running", "queued", "queued", "queued"]
            for released, expected in ((ids[1], ids[2]), (ids[0], ids[3]), (ids[2], ids[4])):
                assert c.post(f"{API}/sessions/{released}/prompt", json={"message": "go"}).status_code == 202
                feed.wait(lambda r=released, e=expected: "completed" in feed.statuses(r) and e in running(),
                          f"{expected} admitted after {released} completed")
                assert len(running()) == 2
            for sid in (ids[3], ids[4]):
                assert c.post(f"{API}/sessions/{sid}/prompt", json={"message": "go"}).status_code == 202
            feed.wait(lambda: all("completed" in feed.statuses(s) for s in ids), "all completed")
        # Replay the feed: never more than two admitted at once, and they were admitted in order.
        admitted: list[str] = []
        most, active = 0, set()
        for item in feed.items:
            if item["type"] != "status":
                continue
            if item["status"] == "provisioning":
                admitted.append(item["sessionId"])
                active.add(item["sessionId"])
            elif item["status"] in TERMINAL:
                active.discard(item["sessionId"])
            most = max(most, len(active))
        assert most == 2
        assert set(admitted[:2]) == set(ids[:2])
        assert admitted[2:] == ids[2:]
    finally:
        feed.close()
        daemon.stop()


def test_fan_out_creates_one_session_per_count_and_agent(c: httpx.Client) -> None:
    three = create(c, command_task(["true"], count=3))
    assert len(set(three["session_ids"])) == 3
    assert three["id"] == three["session_ids"][0]
    assert three["status"] == "queued"
    both = create(c, {"prompt": "two agents", "agents": [
        {"type": "command", "settings": {"command": ["true"]}},
        {"type": "scenario", "count": 2, "settings": {"speed": 100, "scenario": {"timeline": [{"complete": True}]}}}]})
    assert len(both["session_ids"]) == 3
    agents = [view(c, s)["agent"]["type"] for s in both["session_ids"]]
    assert agents == ["command", "scenario", "scenario"]
    for sid in three["session_ids"] + both["session_ids"]:
        assert wait_status(c, sid, TERMINAL)["status"] == "completed"


def test_an_idempotency_key_replays_the_first_answer_and_creates_nothing_new(c: httpx.Client) -> None:
    body = command_task(["true"], labels={"idem": "once"})
    first = c.post(f"{API}/tasks", json=body, headers={"Idempotency-Key": "key-1"})
    again = c.post(f"{API}/tasks", json=body, headers={"Idempotency-Key": "key-1"})
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json()
    listed = c.get(f"{API}/sessions", params={"perPage": 200}).json()["items"]
    assert [s["id"] for s in listed if s["labels"] == {"idem": "once"}] == [first.json()["id"]]
    other = c.post(f"{API}/tasks", json={**body, "prompt": "something else"}, headers={"Idempotency-Key": "key-1"})
    assert other.status_code == 409
    assert other.headers["Content-Type"].startswith("application/problem+json")
    assert c.post(f"{API}/tasks", json=body, headers={"Idempotency-Key": "key-2"}).json()["id"] != first.json()["id"]


# -- bad input -------------------------------------------------------------------------------------

def _task(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"prompt": "valid", "agents": [{"type": "command", "settings": {"command": ["true"]}}]}
    body.update(changes)
    return body


def _agent(**changes: Any) -> dict[str, Any]:
    return _task(agents=[{"type": "command", "settings": {"command": ["true"]}, **changes}])


BAD_TASKS: list[tuple[str, dict[str, Any], str]] = [
    ("prompt missing", {"agents": [{"type": "command", "settings": {"command": ["true"]}}]}, "prompt"),
    ("prompt empty", _task(prompt="  "), "prompt"),
    ("prompt not text", _task(prompt=42), "prompt"),
    ("prompt no blocks", _task(prompt=[]), "prompt"),
    ("prompt block kind", _task(prompt=[{"type": "video", "uri": "x"}]), "prompt[0].type"),
    ("prompt text block without text", _task(prompt=[{"type": "text"}]), "prompt[0]"),
    ("prompt too long", _task(prompt="x" * (256 * 1024 + 1)), "prompt"),
    ("no agent", _task(agents=[]), "agents"),
    ("neither agent nor agents", {"prompt": "x"}, "agents"),
    ("agents not a list", _task(agents={"type": "command"}), "agents"),
    ("agents[0].type unknown", _agent(type="no-such-agent"), "agents[0].type"),
    ("agents[0].type missing", _task(agents=[{"settings": {}}]), "agents[0].type"),
    ("agent.type unknown", {"prompt": "x", "agent": {"type": "no-such-agent", "version": "latest"}}, "agent.type"),
    ("count zero", _agent(count=0), "agents[0].count"),
    ("count too many", _agent(count=51), "agents[0].count"),
    ("count not a number", _agent(count="three"), "agents[0].count"),
    ("version too long", _agent(version="v" * 65), "agents[0].version"),
    ("settings not an object", _agent(settings=["true"]), "agents[0].settings"),
    ("command not an argv", _agent(settings={"command": "make test"}), "agents[0].settings.command"),
    ("settings.speed", {"prompt": "x", "agents": [{"type": "scenario", "settings": {"speed": -1}}]},
     "agents[0].settings.speed"),
    ("settings.scenario", {"prompt": "x", "agents": [{"type": "scenario", "settings": {"scenario": "../etc"}}]},
     "agents[0].settings.scenario"),
    ("repo.url missing for git", _task(repo={"mode": "git"}), "repo.url"),
    ("repo.url no such directory", _task(repo={"mode": "git", "url": "/no/such/repo"}), "repo.url"),
    ("repo.url too long", _task(repo={"url": "https://x/" + "a" * 5000}), "repo.url"),
    ("repo.mode", _task(repo={"mode": "svn", "url": "https://example.com/r.git"}), "repo.mode"),
    ("repo.branch", _task(repo={"url": "https://example.com/r.git", "branch": "--upload-pack=x"}), "repo.branch"),
    ("repo not an object", _task(repo="https://example.com/r.git"), "repo"),
    ("runtime.type", _task(runtime={"type": "docker"}), "runtime.type"),
    ("runtime.resources.cpu", _task(runtime={"type": "local", "resources": {"cpu": 0}}), "runtime.resources.cpu"),
    ("delivery.mode", _task(delivery={"mode": "fax"}), "delivery.mode"),
    ("webhooks[0].url", _task(webhooks=[{"event": "session.ended", "url": "ftp://example.com/hook"}]),
     "webhooks[0].url"),
    ("webhooks[0].event", _task(webhooks=[{"event": "", "url": "https://example.com/hook"}]), "webhooks[0].event"),
    ("webhooks not a list", _task(webhooks={"url": "https://example.com"}), "webhooks"),
    ("labels not strings", _task(labels={"team": 7}), "labels.team"),
    ("labels not an object", _task(labels=["a"]), "labels"),
    ("timeoutSeconds negative", _task(timeoutSeconds=-1), "timeoutSeconds"),
    ("timeoutSeconds too long", _task(timeoutSeconds=8 * 86400), "timeoutSeconds"),
    ("timeoutSeconds not a number", _task(timeoutSeconds="soon"), "timeoutSeconds"),
    ("tenantId too long", _task(tenantId="t" * 129), "tenantId"),
    ("tenant_id too long", _task(tenant_id="t" * 129), "tenant_id"),  # named as the client spelled it
    ("projectId too long", _task(projectId="p" * 129), "projectId"),
    ("body not an object", [], "body"),  # type: ignore[list-item]
]


@pytest.mark.parametrize(("body", "field"), [(b, f) for _, b, f in BAD_TASKS], ids=[n for n, _, _ in BAD_TASKS])
def test_every_field_of_a_task_is_validated(c: httpx.Client, body: Any, field: str) -> None:
    before = c.get(f"{API}/sessions", params={"perPage": 1}).json()["total"]
    r = c.post(f"{API}/tasks", json=body)
    assert r.status_code == 400, r.text
    assert r.headers["Content-Type"].startswith("application/problem+json")
    problem = r.json()
    assert problem["status"] == 400
    assert isinstance(problem["errors"], dict)
    assert field in problem["errors"], problem
    assert all(isinstance(m, str) and m for m in problem["errors"][field])
    assert c.get(f"{API}/sessions", params={"perPage": 1}).json()["total"] == before  # nothing was created


def test_an_unavailable_agent_is_422_naming_it(c: httpx.Client) -> None:
    r = c.post(f"{API}/tasks", json={"prompt": "x", "agents": [{"type": "claude-code"}]})
    assert r.status_code == 422, r.text
    assert r.headers["Content-Type"].startswith("application/problem+json")
    assert "agents[0].type" in r.json()["errors"]
    assert "claude" in r.json()["detail"]


def _example(schema: dict[str, Any], components: dict[str, Any]) -> Any:
    """A small valid value for a (simple) JSON schema: what a request to an unknown id carries."""
    if "$ref" in schema:
        return _example(components[schema["$ref"].rsplit("/", 1)[1]], components)
    for key in ("anyOf", "oneOf"):
        if key in schema and "properties" not in schema:  # (on an object, they only say what is required)
            options = [s for s in schema[key] if s.get("type") != "null"]
            return _example(options[0], components)
    if "enum" in schema:
        return schema["enum"][0]
    kind = schema.get("type", "object")
    if kind == "object":
        props = schema.get("properties", {})
        # Required fields, plus the text a prompt or a label needs to be meaningful.
        names = set(schema.get("required", [])) | ({"prompt", "message", "label"} & set(props))
        return {n: _example(props[n], components) for n in names}
    return {"string": "x", "integer": 1, "number": 1, "boolean": True, "array": []}[kind]


def test_unknown_session_ids_are_404_on_every_session_route(c: httpx.Client) -> None:
    doc = c.get(f"{API}/openapi.json").json()
    components = doc["components"]["schemas"]
    unknown = "01JUNKNOWNSESSI0NID0000000"
    checked = []
    for path, operations in doc["paths"].items():
        if "{session_id}" not in path:
            continue
        url = re.sub(r"\{[^}]+\}", lambda m: unknown if m.group(0) == "{session_id}" else "README.md", path)
        for method, op in operations.items():
            # A valid request in every other respect: required query parameters and body fields.
            kwargs: dict[str, Any] = {"params": {p["name"]: _example(p["schema"], components)
                                                 for p in op.get("parameters", [])
                                                 if p["in"] == "query" and p.get("required")}}
            if "requestBody" in op:
                kwargs["json"] = _example(op["requestBody"]["content"]["application/json"]["schema"], components)
            r = c.request(method.upper(), url, **kwargs)
            assert r.status_code == 404, f"{method.upper()} {path}: {r.status_code} {r.text}"
            assert r.headers["Content-Type"].startswith("application/problem+json"), path
            assert r.json()["status"] == 404
            checked.append(f"{method} {path}")
    assert len(checked) >= 9  # at least this module's routes: get, delete, pause, resume, stop, prompt, ...
    with c.stream("GET", f"{API}/sessions/{unknown}/events", headers={"Accept": "text/event-stream"}) as r:
        assert r.status_code == 404  # never an endless stream
