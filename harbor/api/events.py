"""Events over HTTP: a session's SSE stream or history pages, its WebSocket, and the dashboard feed."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any, Literal

import trio
from pydantic import AliasChoices, BaseModel, ConfigDict, Field, field_validator
from quart import Blueprint, Response, request, websocket

from harbor.api.deps import harbor, tenant
from harbor.api.problems import Problem
from harbor.api.routing import endpoint
from harbor.api.sessions import visible_row
from harbor.api.streams import CLOSED, FINISHED, KEEPALIVE, SSE_HEADERS, TIMEOUT, encode_events, encode_frame, next_or
from harbor.security.tenancy import feed_filter
from harbor.sessions import page

bp = Blueprint("events", __name__, url_prefix="/api/v1")

_HISTORY_PARAMS = {"page", "perPage", "per_page", "type", "level", "since", "until", "sort"}


def _timestamp(value: str | float | None) -> float | None:
    if value is None or isinstance(value, float):
        return value
    try:
        return float(value)
    except ValueError:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


class EventsQuery(BaseModel):
    model_config = ConfigDict(populate_by_name=True, extra="ignore")
    page: int = Field(1, ge=1, le=1_000_000)
    perPage: int = Field(50, ge=1, le=200, validation_alias=AliasChoices("perPage", "per_page"))
    type: str | None = Field(None, max_length=200, description="Comma-separated spec types")
    level: Literal["debug", "info", "warn", "error"] | None = None
    since: str | None = Field(None, max_length=40, description="ISO-8601 time or unix seconds")
    until: str | None = Field(None, max_length=40)
    sort: Literal["asc", "desc"] = "desc"
    after: int | None = Field(None, ge=0, description="Stream: events after this seq")

    @field_validator("since", "until")
    @classmethod
    def _is_time(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                _timestamp(value)
            except ValueError as exc:
                raise ValueError("must be an ISO-8601 time or unix seconds") from exc
        return value


def _wants_stream() -> bool:
    accept = request.headers.get("Accept", "")
    if "text/event-stream" in accept:
        return True
    return not (_HISTORY_PARAMS & set(request.args))


def _resume_point(query_after: int | None) -> int:
    header = request.headers.get("Last-Event-ID", "").strip()
    if header:
        if not header.isdigit():
            raise Problem(400, "Last-Event-ID must be an event seq (a whole number)",
                          errors={"Last-Event-ID": ["must be a whole number"]})
        return int(header)
    return query_after or 0


def sse_response(body: AsyncIterator[bytes]) -> Response:
    response = Response(body, content_type="text/event-stream; charset=utf-8", headers=SSE_HEADERS)
    response.timeout = None  # quart cuts responses at 60 s otherwise
    return response


@endpoint(bp, "GET", "/sessions/<session_id>/events",
          summary="Live SSE stream (Accept: text/event-stream), or a page of history with page/type/…",
          query=EventsQuery, responses={200: {"content": {
              "text/event-stream": {"schema": {"type": "string"}},
              "application/json": {"schema": {"type": "object"}}}}})
async def session_events(session_id: str, query: EventsQuery) -> Any:
    row = await visible_row(session_id)
    core = harbor()
    if not _wants_stream():
        kinds = [k.strip() for k in query.type.split(",") if k.strip()] if query.type else None
        total, items = await core.events.history(
            session_id, kinds=kinds, level=query.level, since=_timestamp(query.since),
            until=_timestamp(query.until), descending=query.sort == "desc", page=query.page,
            per_page=query.perPage)
        return page(items, query.page, query.perPage, total)
    after = _resume_point(query.after)
    keepalive = core.settings.sse_keepalive_seconds

    async def body() -> AsyncIterator[bytes]:
        yield encode_frame("status", core.events.current_status(session_id, row.status))
        async with core.events.open_stream(session_id, after) as reader:
            while True:
                batch = await next_or(reader.next_batch, core.closing, keepalive)
                if batch is CLOSED:  # the daemon is shutting down: the client may come back later
                    return
                if batch is None:  # the session is over and everything has been sent
                    yield FINISHED
                    return
                if batch is TIMEOUT:
                    yield KEEPALIVE
                    continue
                yield encode_events(batch)  # type: ignore[arg-type]

    return sse_response(body())


@endpoint(bp, "GET", "/events", summary="Dashboard feed: every session's creation and status changes (SSE)",
          stream=True)
async def all_events() -> Any:
    core = harbor()
    keepalive = core.settings.sse_keepalive_seconds
    keep = feed_filter(core.journal, tenant())  # a tenant sees only its own sessions
    channel = core.events.feed.subscribe()

    async def body() -> AsyncIterator[bytes]:
        async with channel:
            yield b": connected\n\n"
            while True:
                item = await next_or(channel.receive, core.closing, keepalive)
                if item is CLOSED:
                    return
                if item is TIMEOUT:
                    yield KEEPALIVE
                    continue
                if keep is not None and not await keep(item):  # type: ignore[arg-type]
                    continue
                yield encode_frame(item["type"], item)  # type: ignore[index]

    return sse_response(body())


async def _ws_command(session_id: str, message: dict[str, Any]) -> dict[str, Any]:
    guard = harbor().extensions.get("ws_command")  # roles, rate limit and audit (harbor.security)
    if guard is not None:
        return await guard(session_id, message, _run_ws_command)  # type: ignore[no-any-return]
    return await _run_ws_command(session_id, message)


async def _run_ws_command(session_id: str, message: dict[str, Any]) -> dict[str, Any]:
    sessions = harbor().sessions
    op = message.get("op")
    try:
        if op == "pause":
            await sessions.pause(session_id)
        elif op == "resume":
            await sessions.resume(session_id)
        elif op == "stop":
            await sessions.stop(session_id, message.get("reason"))
        elif op == "prompt":
            text = message.get("prompt") or message.get("message") or ""
            if isinstance(text, list):
                text = "\n\n".join(b.get("text", "") for b in text if isinstance(b, dict))
            if not isinstance(text, str) or not text.strip():
                raise Problem(400, "prompt needs text", errors={"prompt": ["is required"]})
            await sessions.prompt(session_id, text)
        else:
            raise Problem(400, f"unknown op {op!r}: use pause, resume, stop or prompt", errors={"op": ["unknown"]})
    except Problem as problem:
        return {"op": op, "ok": False, "error": problem.body()}
    return {"op": op, "ok": True}


@bp.websocket("/sessions/<session_id>/ws")
async def session_ws(session_id: str) -> None:
    """The session's events as JSON text frames; accepts ``{"op": ...}`` commands."""
    core = harbor()
    authorize = core.extensions.get("authorize_ws")
    if authorize is not None:
        await authorize()
    try:
        await visible_row(session_id)
    except Problem:
        # Closing before the handshake would answer HTTP 403, which a browser cannot tell from any
        # other refusal: accept, then close with the application's "not found" code.
        await websocket.accept()
        await websocket.close(4404, "no such session")
        return
    await websocket.accept()
    after = int(websocket.args.get("after", "0") or 0) if websocket.args.get("after", "0").isdigit() else 0

    async def send_events(cancel: trio.CancelScope) -> None:
        async with core.events.open_stream(session_id, after) as reader:
            while (batch := await next_or(reader.next_batch, core.closing, 3600)) is not None:
                if batch is CLOSED:
                    await websocket.close(1001, "daemon stopping")
                    break
                if batch is TIMEOUT:
                    continue
                for event in batch:  # type: ignore[union-attr]
                    await websocket.send(event.wire_json())
            else:
                await websocket.close(1000, "session ended")
        cancel.cancel()

    async def receive_commands() -> None:
        while True:
            raw = await websocket.receive()
            try:
                message = json.loads(raw)
                if not isinstance(message, dict):
                    raise ValueError("not an object")
            except (ValueError, RecursionError):
                await websocket.send(json.dumps({"ok": False, "error": {"status": 400,
                                                                        "detail": "frames must be JSON objects"}}))
                continue
            await websocket.send(json.dumps(await _ws_command(session_id, message)))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(send_events, nursery.cancel_scope)
        nursery.start_soon(receive_commands)
