"""A session's WebSocket (``/api/v1/sessions/{id}/ws``) with a real WebSocket client: the same
events as the SSE stream, as JSON text frames, and control commands sent as ``{"op": ...}``."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import trio
from trio_websocket import ConnectionClosed, WebSocketConnection, open_websocket_url

from tests.harness import DaemonProcess, scenario_task
from tests.integration.sse import API, history, through_terminal


def ws_url(daemon: DaemonProcess, session_id: str, query: str = "") -> str:
    return daemon.url.replace("http://", "ws://", 1) + f"{API}/sessions/{session_id}/ws{query}"


async def receive_until(ws: WebSocketConnection, done: Callable[[dict[str, Any]], bool],
                        into: list[dict[str, Any]], timeout: float = 20) -> dict[str, Any]:
    """Receive JSON frames into ``into`` until one satisfies ``done``; return that one."""
    with trio.fail_after(timeout):
        while True:
            message = await ws.get_message()
            assert isinstance(message, str), "frames must be text"
            frame = json.loads(message)
            into.append(frame)
            if done(frame):
                return frame


async def receive_all(ws: WebSocketConnection, timeout: float = 30) -> tuple[list[dict[str, Any]], Any]:
    """Every frame until the server closes; returns them and the close reason."""
    frames: list[dict[str, Any]] = []
    with trio.fail_after(timeout):
        try:
            while True:
                frames.append(json.loads(await ws.get_message()))
        except ConnectionClosed as closed:
            return frames, closed.reason


def reply_to(op: str) -> Callable[[dict[str, Any]], bool]:
    return lambda frame: frame.get("op") == op and "ok" in frame


async def test_websocket_carries_the_sessions_events(daemon: DaemonProcess) -> None:
    async with daemon.aclient() as client:
        created = await client.post(f"{API}/tasks", json=scenario_task("demo", speed=50))
        session_id = created.json()["id"]
        async with open_websocket_url(ws_url(daemon, session_id)) as ws:
            frames, closed = await receive_all(ws)
        stored = await history(client, session_id)
        async with open_websocket_url(ws_url(daemon, session_id, "?after=10")) as ws:
            resumed, _ = await receive_all(ws)
    # The same objects as the stored history (and so as the SSE data), ending with the terminal status.
    assert frames == through_terminal(stored)
    assert frames[-1]["type"] == "status"
    assert frames[-1]["status"] == "completed"
    assert (closed.code, closed.reason) == (1000, "session ended")
    assert resumed == through_terminal(stored)[10:]


async def test_websocket_commands_control_the_session(daemon: DaemonProcess) -> None:
    async with daemon.aclient() as client:
        created = await client.post(f"{API}/tasks", json=scenario_task("long_running", speed=1))
        session_id = created.json()["id"]
        frames: list[dict[str, Any]] = []
        async with open_websocket_url(ws_url(daemon, session_id)) as ws:
            await receive_until(ws, lambda f: f.get("status") == "running", frames)

            await ws.send_message(json.dumps({"op": "pause"}))
            assert await receive_until(ws, reply_to("pause"), frames) == {"op": "pause", "ok": True}
            assert (await client.get(f"{API}/sessions/{session_id}")).json()["status"] == "paused"
            await ws.send_message(json.dumps({"op": "pause"}))  # already paused: refused, with the reason
            again = await receive_until(ws, reply_to("pause"), frames)
            assert again["ok"] is False
            assert again["error"]["status"] == 409

            await ws.send_message(json.dumps({"op": "resume"}))
            assert await receive_until(ws, reply_to("resume"), frames) == {"op": "resume", "ok": True}
            assert (await client.get(f"{API}/sessions/{session_id}")).json()["status"] == "running"

            await ws.send_message(json.dumps({"op": "prompt", "prompt": "hi"}))
            assert await receive_until(ws, reply_to("prompt"), frames) == {"op": "prompt", "ok": True}
            # The agent reads it from its input and says so in its output.
            await receive_until(ws, lambda f: f.get("role") == "user" and f.get("message") == "hi", frames)

            await ws.send_message(json.dumps({"op": "dance"}))
            unknown = await receive_until(ws, reply_to("dance"), frames)
            assert unknown["ok"] is False
            assert unknown["error"]["status"] == 400
            assert "op" in unknown["error"]["errors"]
            await ws.send_message(json.dumps({"op": "prompt", "prompt": "  "}))
            empty = await receive_until(ws, reply_to("prompt"), frames)
            assert empty["ok"] is False
            assert "prompt" in empty["error"]["errors"]
            await ws.send_message("not json")
            garbled = await receive_until(ws, lambda f: f.get("ok") is False and "op" not in f, frames)
            assert garbled["error"]["status"] == 400

            await ws.send_message(json.dumps({"op": "stop"}))
            assert await receive_until(ws, reply_to("stop"), frames) == {"op": "stop", "ok": True}
            rest, closed = await receive_all(ws)
        stored = await history(client, session_id)
    events = [f for f in frames + rest if "seq" in f]
    assert events == through_terminal(stored)
    statuses = [e["status"] for e in events if e["type"] == "status"]
    assert statuses == ["provisioning", "running", "pausing", "paused", "resuming", "running", "stopping",
                        "stopped"]
    assert closed.code == 1000


async def test_unknown_session_closes_with_4404(daemon: DaemonProcess) -> None:
    async with open_websocket_url(ws_url(daemon, "01NOSUCHSESSION0000000000")) as ws:
        frames, closed = await receive_all(ws, timeout=10)
    assert frames == []
    assert closed.code == 4404
