"""Reading Server-Sent Events (the daemon's event streams) from lines of text."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any


async def parse_sse(lines: AsyncIterator[str]) -> AsyncIterator[tuple[int | None, str, Any]]:
    """Yield ``(id, event name, decoded data)`` per Server-Sent Events frame; comments are skipped.

    A frame whose data is not JSON is yielded with the raw text as data.
    """
    ident: int | None = None
    name = "message"
    data: list[str] = []
    async for line in lines:
        if line == "":
            if data:
                raw = "\n".join(data)
                try:
                    decoded: Any = json.loads(raw)
                except ValueError:
                    decoded = raw
                yield ident, name, decoded
            ident, name, data = None, "message", []
            continue
        if line.startswith(":"):
            continue
        field, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if field == "id":
            ident = int(value) if value.isdigit() else None
        elif field == "event":
            name = value
        elif field == "data":
            data.append(value)
