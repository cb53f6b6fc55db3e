"""ASGI wrappers around the Quart-Trio app."""

from __future__ import annotations

from typing import Any

import trio

Scope = dict[str, Any]


class ShieldFinalBody:
    """Shield the final ``http.response.body`` send from cancellation.

    quart-trio cancels the request task when hypercorn delivers ``http.disconnect``, and hypercorn
    delivers it during the app's last empty-body send. That cancellation breaks hypercorn's
    keep-alive bookkeeping: idle pooled connections are never closed and graceful shutdown waits the
    full ``graceful_timeout`` (stack-notes.md, measured). Shielding that one send fixes both.
    """

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def shielded_send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                with trio.CancelScope(shield=True):
                    await send(message)
            else:
                await send(message)

        await self.app(scope, receive, shielded_send)
