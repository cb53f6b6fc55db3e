"""An async client for the daemon's REST API (``/api/v1``), over httpx, for trio (or asyncio).

Every call answers the decoded JSON body or raises :class:`HarborError`, which carries the
Problem+JSON fields of the daemon's answer. Transient failures are retried with backoff (tenacity):
connection errors, 5xx and 429 (honouring ``Retry-After``). A request that may have reached the daemon
is retried only when repeating it is harmless: GET/HEAD/DELETE, and POSTs that carry an
``Idempotency-Key`` (:meth:`HarborClient.create_task` sends one unless told otherwise). A POST that
never left this machine (the connection was refused) is always safe to retry.

:meth:`HarborClient.follow` reads a session's SSE stream and reconnects by itself with
``Last-Event-ID`` until the session ends, so a reader sees every event once, in order, even across
a daemon restart::

    async with HarborClient("http://127.0.0.1:8080") as client:
        created = await client.create_task("Fix the login bug", agent="scenario")
        async with aclosing(client.follow(created["id"])) as events:
            async for event in events:
                print(event["seq"], event["type"])

The package, by concept (import from ``harbor.client``; the modules are its layout, not its API):

- :mod:`harbor.client.rest`: :class:`HarborClient`, the request core, one method per endpoint,
  and the event streams (``follow``, ``feed``, ``open_feed``).
- :mod:`harbor.client.errors`: :class:`HarborError` (an error answer, its Problem+JSON read back)
  and :class:`DaemonUnreachable` (no answer at all).
- :mod:`harbor.client.retry`: what is retried and how long to wait (``Retry-After``, else
  exponential backoff with jitter).
- :mod:`harbor.client.status`: :data:`TERMINAL` and :data:`ACTIVE`, the session statuses grouped.
"""

from __future__ import annotations

from harbor.client.errors import DaemonUnreachable, HarborError
from harbor.client.rest import HarborClient
from harbor.client.status import ACTIVE, TERMINAL
from harbor.sse import parse_sse

__all__ = ["ACTIVE", "TERMINAL", "DaemonUnreachable", "HarborClient", "HarborError", "parse_sse"]
