"""Server-Sent Events framing and the race every stream runs: next batch, keep-alive, or shutdown."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, TypeVar

import trio

from actors.events import Event

T = TypeVar("T")

KEEPALIVE = b": keep-alive\n\n"
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no", "Connection": "keep-alive"}


class _Timeout:
    pass


class _Closed:
    pass


TIMEOUT = _Timeout()
CLOSED = _Closed()


def encode_events(events: Iterable[Event]) -> bytes:
    """SSE frames for a batch, as one chunk (batching is what makes SSE fast, stack-notes.md)."""
    parts = []
    for e in events:
        data = json.dumps(e.wire(), separators=(",", ":"), ensure_ascii=False)
        parts.append(f"id: {e.seq}\nevent: {e.sse_name}\ndata: {data}\n\n")
    return "".join(parts).encode()


def encode_frame(name: str, data: dict[str, Any], ident: int | None = None) -> bytes:
    head = f"id: {ident}\n" if ident is not None else ""
    return f"{head}event: {name}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


async def next_or(get: Callable[[], Awaitable[T]], closing: trio.Event, timeout: float) -> T | _Timeout | _Closed:
    """Await ``get()``, unless ``timeout`` passes (:data:`TIMEOUT`) or ``closing`` is set (:data:`CLOSED`).

    ``get`` must be cancel-safe. The nursery lives inside this call only, never across a ``yield``.
    """
    result: list[T] = []
    if closing.is_set():
        return CLOSED
    async with trio.open_nursery() as nursery:
        nursery.cancel_scope.deadline = trio.current_time() + timeout

        async def fetch() -> None:
            result.append(await get())
            nursery.cancel_scope.cancel()

        async def watch() -> None:
            await closing.wait()
            nursery.cancel_scope.cancel()

        nursery.start_soon(fetch)
        nursery.start_soon(watch)
    if result:
        return result[0]
    return CLOSED if closing.is_set() else TIMEOUT
