"""A browser's own ``EventSource`` reads a session's stream: the event names the WebUI listens for,
in order; its automatic reconnection (with ``Last-Event-ID``) across a daemon restart repeats nothing
and misses nothing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.harness import DaemonProcess, scenario_task
from tests.integration.sse import API, sse_name_of

pytestmark = pytest.mark.browser

#: Listens exactly as the WebUI client does (only these names), records every frame, and resolves
#: once the stream has delivered a numbered terminal status; the opening ``status`` frame carries no id.
COLLECT = """
async ([sessionId]) => await new Promise((resolve, reject) => {
  const names = ["status", "thinking", "tool_execution", "file_edit", "progress", "log"];
  const terminal = ["completed", "failed", "stopped", "cancelled"];
  const got = [];
  const source = new EventSource(`/api/v1/sessions/${sessionId}/events`);
  const timer = setTimeout(() => { source.close(); reject(new Error("timed out: " + JSON.stringify(got.slice(-2)))); },
                           45000);
  for (const name of names) {
    source.addEventListener(name, (e) => {
      const data = JSON.parse(e.data);
      // lastEventId keeps the previous id across a frame without one: tell them apart by data.seq.
      got.push({name, lastEventId: e.lastEventId, data});
      if (name === "status" && data.seq !== undefined && terminal.includes(data.status)) {
        source.close();
        clearTimeout(timer);
        resolve({got});
      }
    });
  }
});
"""


def history(daemon: DaemonProcess, session_id: str) -> list[dict[str, Any]]:
    with daemon.client() as client:
        return client.get(f"{API}/sessions/{session_id}/events", params={"sort": "asc", "perPage": 200}).json()[
            "items"]


def start_session(daemon: DaemonProcess, speed: float, scenario: Any = "demo") -> str:
    with daemon.client() as client:
        return client.post(f"{API}/tasks", json=scenario_task(scenario, speed=speed)).json()["id"]


def test_eventsource_receives_the_stream_in_order(daemon: DaemonProcess, page: Any) -> None:
    session_id = start_session(daemon, speed=20)  # slow enough that the browser joins it live
    page.goto(f"{daemon.url}{API}/healthz")  # the daemon's origin: same-origin EventSource
    result = page.evaluate(COLLECT, [session_id])
    stored = history(daemon, session_id)
    numbered = [f for f in result["got"] if "seq" in f["data"]]
    opening = result["got"][0]
    assert opening["name"] == "status"
    assert "seq" not in opening["data"]
    # Everything the browser listens for, in order, with ids: what the WebUI shows is the history.
    listened = [e for e in stored if sse_name_of(e) in {"status", "thinking", "tool_execution", "file_edit",
                                                        "progress", "log"}]
    last_status = max(i for i, e in enumerate(listened) if e["type"] == "status")
    assert [f["data"] for f in numbered] == listened[: last_status + 1]
    assert [f["name"] for f in numbered] == [sse_name_of(e) for e in listened[: last_status + 1]]
    assert [f["lastEventId"] for f in numbered] == [str(e["seq"]) for e in listened[: last_status + 1]]
    names = {f["name"] for f in numbered}
    assert {"status", "thinking", "tool_execution", "file_edit", "progress", "log"} <= names
    assert numbered[-1]["data"]["status"] == "completed"


#: Follows a stream into ``window.follow`` as the WebUI client listens, without ever closing it: the
#: test steers the daemon meanwhile and waits on the page's state.
FOLLOW = """
([sessionId]) => {
  const names = ["status", "thinking", "tool_execution", "file_edit", "progress", "log"];
  const terminal = ["completed", "failed", "stopped", "cancelled"];
  const follow = window.follow = {got: [], opens: 0, ended: false};
  const source = new EventSource(`/api/v1/sessions/${sessionId}/events`);
  source.onopen = () => { follow.opens += 1; };
  for (const name of names) {
    source.addEventListener(name, (e) => {
      const data = JSON.parse(e.data);
      follow.got.push({name, lastEventId: e.lastEventId, data, open: follow.opens});
      if (name === "status" && data.seq !== undefined && terminal.includes(data.status)) follow.ended = true;
    });
  }
}
"""

#: Thinks twice, then waits ten minutes: still running when its daemon stops.
LINGERING = {"name": "lingering", "timeline": [
    {"think": [[0, "first thought"], [10, "second thought"]]},
    {"think": [[600_000, "never reached"]]},
]}


def test_eventsource_reconnects_across_a_daemon_restart_and_repeats_nothing(tmp_path: Path, page: Any) -> None:
    data_dir = tmp_path / "data"
    first = DaemonProcess(data_dir).start()
    second = None
    try:
        session_id = start_session(first, speed=1, scenario=LINGERING)
        page.goto(f"{first.url}{API}/healthz")  # the daemon's origin: same-origin EventSource
        page.evaluate(FOLLOW, [session_id])
        page.wait_for_function("window.follow.got.filter(f => f.name === 'thinking').length >= 2", timeout=20_000)
        # The daemon ends the stream as it stops (the session with it); the browser retries the
        # same address every 3 s until the restarted daemon answers there.
        assert first.stop()[0] == 0
        second = DaemonProcess(data_dir, "--port", first.url.rsplit(":", 1)[1]).start()
        page.wait_for_function("window.follow.ended && window.follow.opens >= 2", timeout=30_000)
        got = page.evaluate("window.follow.got")
        stored = history(second, session_id)
    finally:
        first.kill()
        if second is not None:
            second.stop()
    numbered = [f for f in got if "seq" in f["data"]]
    listened = [e for e in stored if sse_name_of(e) in {"status", "thinking", "tool_execution", "file_edit",
                                                        "progress", "log"}]
    last_status = max(i for i, e in enumerate(listened) if e["type"] == "status")
    # Every event once, in order, across both connections: exactly the history through the end.
    assert [f["data"] for f in numbered] == listened[: last_status + 1]
    assert numbered[-1]["data"]["status"] == "stopped"
    first_connection = [f for f in numbered if f["open"] == 1]
    second_connection = [f for f in numbered if f["open"] == 2]
    assert first_connection
    assert second_connection
    assert second_connection[0]["data"]["seq"] == first_connection[-1]["data"]["seq"] + 1
