"""Server-Sent Events framing and the race every stream runs: next batch, keep-alive, or shutdown."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, TypeVar

import trio

from actors.events import Event

T = TypeVar("T")

KEEPALIVE = b": keep-alive\n\n"

#: The reconnection time a finished session's stream sets as it ends (a day, in ms). A browser's
#: ``EventSource`` reconnects to any stream that ends, by default after about 3 s, and would keep
#: reopening a stream that has nothing more to say for as long as the page stays open. A ``retry:``
#: field alone dispatches no event, so clients that ignore it see no difference. Not sent when the
#: daemon ends streams to shut down: those clients should come back after the restart.
FINISHED_RETRY_MS = 86_400_000
FINISHED = f"retry: {FINISHED_RETRY_MS}\n\n".encode()
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no", "Connection": "keep-alive"}


class _Timeout:
    pass


class _Closed:
    pass


TIMEOUT = _Timeout()
CLOSED = _Closed()


def encode_events(events: Iterable[Event]) -> bytes:
    """SSE frames for a batch, as one chunk (batching is what makes SSE fast, stack-notes.md).

    Each event's frame is encoded once and shared by every stream sending it.
    """
    return b"".join([e.sse_frame() for e in events])


def encode_frame(name: str, data: dict[str, Any], ident: int | None = None) -> bytes:
    head = f"id: {ident}\n" if ident is not None else ""
    return f"{head}event: {name}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


class _Watch:
    """The cancel scopes of the calls waiting in :func:`next_or` on one ``closing`` event."""

    __slots__ = ("closing", "scopes")

    def __init__(self, closing: trio.Event) -> None:
        self.closing = closing
        self.scopes: set[trio.CancelScope] = set()


_watches: dict[int, _Watch] = {}


def _scopes_of(closing: trio.Event) -> set[trio.CancelScope]:
    """The scope set of ``closing``; the first call starts the one task that cancels them when it is set."""
    watch = _watches.get(id(closing))
    if watch is None or watch.closing is not closing:
        watch = _watches[id(closing)] = _Watch(closing)
        # A system task: it belongs to no request, and ends with the run if ``closing`` never comes.
        trio.lowlevel.spawn_system_task(_cancel_when_set, watch, name="stream shutdown watcher")
    return watch.scopes


async def _cancel_when_set(watch: _Watch) -> None:
    try:
        await watch.closing.wait()
        for scope in list(watch.scopes):
            scope.cancel()
    finally:
        if _watches.get(id(watch.closing)) is watch:
            del _watches[id(watch.closing)]


async def next_or(get: Callable[[], Awaitable[T]], closing: trio.Event, timeout: float) -> T | _Timeout | _Closed:
    """Await ``get()``, unless ``timeout`` passes (:data:`TIMEOUT`) or ``closing`` is set (:data:`CLOSED`).

    ``get`` must be cancel-safe. No task is started per call (a stream calls this once per batch,
    for every reader): one cancel scope, which a single watcher task per ``closing`` event cancels.
    """
    if closing.is_set():
        return CLOSED
    scopes = _scopes_of(closing)
    with trio.move_on_after(timeout) as scope:
        scopes.add(scope)
        try:
            return await get()
        finally:
            scopes.discard(scope)
    return CLOSED if closing.is_set() else TIMEOUT
