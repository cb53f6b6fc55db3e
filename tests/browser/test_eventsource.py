"""A browser's own ``EventSource`` reads a session's stream: the event names the WebUI listens for,
in order, and its automatic reconnection (with ``Last-Event-ID``) repeats nothing."""

from __future__ import annotations

from typing import Any

import pytest

from tests.harness import DaemonProcess, scenario_task
from tests.integration.sse import API, sse_name_of

pytestmark = pytest.mark.browser

#: Listens exactly as the WebUI client does (only these names), and records every frame.
#: Resolves once the stream has delivered a numbered terminal status and then ``reconnects`` more
#: (re)connections have opened; the opening ``status`` frame of each connection carries no id.
COLLECT = """
async ([sessionId, reconnects]) => await new Promise((resolve, reject) => {
  const names = ["status", "thinking", "tool_execution", "file_edit", "progress", "log"];
  const terminal = ["completed", "failed", "stopped", "cancelled"];
  const got = [];
  let opens = 0, opensAtEnd = null;
  const source = new EventSource(`/api/v1/sessions/${sessionId}/events`);
  const finish = () => { source.close(); clearTimeout(timer); resolve({got, opens}); };
  const timer = setTimeout(() => { source.close(); reject(new Error("timed out: " + JSON.stringify(got.slice(-2)))); },
                           45000);
  source.onopen = () => {
    opens += 1;
    if (opensAtEnd !== null && opens >= opensAtEnd + reconnects) {
      // Let the reconnection's frames arrive (it ends at once: nothing new after the last id).
      setTimeout(finish, 500);
    }
  };
  for (const name of names) {
    source.addEventListener(name, (e) => {
      const data = JSON.parse(e.data);
      // lastEventId keeps the previous id across a frame without one: tell them apart by data.seq.
      got.push({name, lastEventId: e.lastEventId, data, open: opens});
      if (name === "status" && data.seq !== undefined && terminal.includes(data.status)) {
        opensAtEnd = opens;
        if (reconnects === 0) finish();
      }
    });
  }
});
"""


def history(daemon: DaemonProcess, session_id: str) -> list[dict[str, Any]]:
    with daemon.client() as client:
        return client.get(f"{API}/sessions/{session_id}/events", params={"sort": "asc", "perPage": 200}).json()[
            "items"]


def start_session(daemon: DaemonProcess, speed: float) -> str:
    with daemon.client() as client:
        return client.post(f"{API}/tasks", json=scenario_task("demo", speed=speed)).json()["id"]


def test_eventsource_receives_the_stream_in_order(daemon: DaemonProcess, page: Any) -> None:
    session_id = start_session(daemon, speed=20)  # slow enough that the browser joins it live
    page.goto(f"{daemon.url}{API}/healthz")  # the daemon's origin: same-origin EventSource
    result = page.evaluate(COLLECT, [session_id, 0])
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


def test_eventsource_reconnection_repeats_nothing(daemon: DaemonProcess, page: Any) -> None:
    session_id = start_session(daemon, speed=100)
    page.goto(f"{daemon.url}{API}/healthz")
    # The stream ends after the terminal status; the browser reconnects by itself, sending the
    # last id it saw, and must get only the opening status: no event twice.
    result = page.evaluate(COLLECT, [session_id, 1])
    assert result["opens"] == 2
    reconnected = [f for f in result["got"] if f["open"] == 2]
    assert [(f["name"], "seq" in f["data"]) for f in reconnected] == [("status", False)]
    seqs = [f["data"]["seq"] for f in result["got"] if "seq" in f["data"]]
    assert len(seqs) == len(set(seqs))
    assert seqs == sorted(seqs)
