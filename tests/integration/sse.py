"""Client-side helpers for the event tests: an SSE parser that behaves like a browser's, stream reads
that hang up at chosen byte offsets, and the stored history read back page by page.

The parser follows the WHATWG ``EventSource`` rules that matter here: a frame is dispatched only at
its blank line (a frame cut off by a disconnect is discarded), ``id:`` sets the last event id,
lines starting with ``:`` are comments, ``retry:`` with digits only sets the reconnection time.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import httpx

API = "/api/v1"

TERMINAL = {"completed", "failed", "stopped", "cancelled"}

#: The SSE ``event:`` name of each spec ``type`` (api-contract.md, "Events").
SSE_NAMES = {"status": "status", "log": "log", "thought": "thinking", "tool_use": "tool_execution",
             "tool_result": "tool_execution", "file_edit": "file_edit", "diff": "diff", "progress": "progress",
             "snapshot": "snapshot", "message": "log"}


def sse_name_of(item: dict[str, Any]) -> str:
    """The ``event:`` name a wire object must travel under."""
    if item["type"] == "log" and "last_line" in item:
        return "tool_execution"  # tool progress
    return SSE_NAMES[item["type"]]


@dataclass
class Frame:
    """One dispatched SSE frame."""

    id: int | None
    event: str
    data: Any


@dataclass
class SSEParser:
    """Feeds bytes, returns complete frames; keeps comments it saw (``: keep-alive``)."""

    comments: list[str] = field(default_factory=list)
    retry_ms: int | None = None  # the reconnection time the stream set, if it did
    _buffer: bytes = b""
    _id: int | None = None
    _event: str = "message"
    _data: list[str] = field(default_factory=list)

    def feed(self, chunk: bytes) -> list[Frame]:
        *lines, self._buffer = (self._buffer + chunk).split(b"\n")
        frames: list[Frame] = []
        for raw in lines:
            line = raw.decode().rstrip("\r")
            if line == "":
                if self._data:
                    frames.append(Frame(self._id, self._event, json.loads("\n".join(self._data))))
                self._id, self._event, self._data = None, "message", []
            elif line.startswith(":"):
                self.comments.append(line)
            else:
                name, _, value = line.partition(":")
                value = value.removeprefix(" ")
                if name == "id":
                    self._id = int(value)
                elif name == "event":
                    self._event = value
                elif name == "data":
                    self._data.append(value)
                elif name == "retry" and value.isdigit():
                    self.retry_ms = int(value)
        return frames


@dataclass
class Read:
    """What one connection to a session's stream delivered."""

    status_code: int
    headers: httpx.Headers
    frames: list[Frame]
    ended: bool  # the server ended the stream (rather than the client hanging up)
    comments: list[str]
    retry_ms: int | None = None

    @property
    def numbered(self) -> list[Frame]:
        """The frames with an ``id:`` (the synthetic opening status has none)."""
        return [f for f in self.frames if f.id is not None]


async def read_stream(client: httpx.AsyncClient, session_id: str, *, last_event_id: int | None = None,
                      after: int | None = None, hang_up_after_bytes: int | None = None,
                      hang_up_at_id: int | None = None) -> Read:
    """Read a session's SSE stream until the server ends it, ``hang_up_after_bytes`` have arrived,
    or a frame with an id of at least ``hang_up_at_id`` has.

    Hanging up drops whatever lies past the cut, as a real disconnect does: a frame cut in two is
    lost, exactly as an ``EventSource`` loses it. A connection the server drops (a daemon going
    away) counts as ended by the server only if it closed the stream cleanly.
    """
    headers = {"Accept": "text/event-stream"}
    if last_event_id is not None:
        headers["Last-Event-ID"] = str(last_event_id)
    params = {"after": str(after)} if after is not None else None
    parser = SSEParser()
    frames: list[Frame] = []
    received = 0
    ended = False
    async with client.stream("GET", f"{API}/sessions/{session_id}/events", headers=headers, params=params,
                             timeout=httpx.Timeout(10, read=60)) as response:
        if response.status_code != 200:
            await response.aread()
            return Read(response.status_code, response.headers, [], True, [])
        try:
            async for chunk in response.aiter_raw():
                if hang_up_after_bytes is not None and received + len(chunk) >= hang_up_after_bytes:
                    frames += parser.feed(chunk[: hang_up_after_bytes - received])
                    break
                received += len(chunk)
                frames += parser.feed(chunk)
                if hang_up_at_id is not None and any(f.id is not None and f.id >= hang_up_at_id for f in frames):
                    break
            else:
                ended = True
        except (httpx.RemoteProtocolError, httpx.ReadError):
            pass  # the daemon went away mid-stream: what arrived whole still counts
    return Read(200, response.headers, frames, ended, parser.comments, parser.retry_ms)


async def history(client: httpx.AsyncClient, session_id: str, **params: Any) -> list[dict[str, Any]]:
    """Every stored event of a session through the JSON history endpoint (all pages, ascending)."""
    items: list[dict[str, Any]] = []
    page = 1
    while page is not None:
        r = await client.get(f"{API}/sessions/{session_id}/events",
                             params={"sort": "asc", "perPage": 200, "page": page, **params},
                             headers={"Accept": "application/json"})
        assert r.status_code == 200, r.text
        body = r.json()
        items += body["items"]
        page = body["nextPage"]
    return items


def through_terminal(stored: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The stored events up to and including the terminal status: what a stream from the start
    delivers before it ends. Only the final snapshot of the workspace may be recorded after it."""
    end = max(i for i, e in enumerate(stored) if e["type"] == "status")
    assert stored[end]["status"] in TERMINAL, stored[end]
    assert all(e["type"] == "snapshot" for e in stored[end + 1:]), stored[end + 1:]
    return stored[: end + 1]
