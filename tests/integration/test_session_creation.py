"""Creating sessions end to end: the real daemon, real agent processes, real HTTP on 127.0.0.1.

The scenario agent really works in its workspace (and exits with its scenario's code, and hears an
injected prompt), admission runs sessions in order under the limit, fan-out creates what was asked,
and idempotent retries create nothing new.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.harness import DaemonProcess, FeedThread, command_task, scenario_task, wait_status
from tests.integration.session_helpers import (  # noqa: F401 (fixtures c, d)
    API,
    DEADLINE,
    TERMINAL,
    create,
    ended,
    events_until,
    sessions_client,
    sessions_daemon,
    view,
)

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

def test_at_most_max_concurrent_tasks_run_in_submission_order(tmp_path: Path) -> None:
    daemon = DaemonProcess(tmp_path / "data", "--allow-command-agent", "--max-concurrent-tasks", "2").start()
    feed = FeedThread(daemon)
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

