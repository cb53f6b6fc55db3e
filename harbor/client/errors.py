"""The client's exceptions: an error answer of the daemon (its Problem+JSON read back), or no answer."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import httpx


class HarborError(Exception):
    """An error answer from the daemon (Problem+JSON), or no answer at all.

    Attributes:
        status: the HTTP status; 0 when the daemon could not be reached.
        title: the problem's short title (``Not Found``).
        detail: a sentence for a person, what went wrong.
        errors: field path → messages, for validation errors (may be empty).
        type: the problem type URI.
        url: the URL that was asked for.
    """

    def __init__(self, status: int, detail: str, *, title: str = "", errors: Mapping[str, Any] | None = None,
                 type: str = "about:blank", url: str = "") -> None:
        self.status = status
        self.title = title
        self.detail = detail
        self.errors: dict[str, list[str]] = {k: list(v) if isinstance(v, (list, tuple)) else [str(v)]
                                             for k, v in (errors or {}).items()}
        self.type = type
        self.url = url
        super().__init__(str(self))

    def __str__(self) -> str:
        text = self.detail or self.title or f"HTTP {self.status}"
        if self.errors:
            fields = "; ".join(f"{name}: {', '.join(msgs)}" for name, msgs in self.errors.items())
            text = f"{text} ({fields})"
        return text

    @classmethod
    def from_response(cls, response: httpx.Response) -> HarborError:
        """The error an answer of status >= 400 stands for (any body; Problem+JSON understood)."""
        try:
            doc = response.json()
        except ValueError:
            doc = None
        if not isinstance(doc, dict):
            text = response.text.strip().splitlines()[0][:200] if response.text.strip() else ""
            doc = {"detail": text or response.reason_phrase}
        errors = doc.get("errors")
        return cls(response.status_code, str(doc.get("detail") or doc.get("title") or response.reason_phrase),
                   title=str(doc.get("title") or response.reason_phrase), type=str(doc.get("type") or "about:blank"),
                   errors=errors if isinstance(errors, dict) else None, url=str(response.request.url))


class DaemonUnreachable(HarborError):
    """No daemon answered at the base URL (refused, timed out, name unknown) within the retry budget."""

    def __init__(self, base_url: str, reason: str) -> None:
        super().__init__(0, f"cannot reach the daemon at {base_url}: is it running? (ah agent access-point)",
                         title="Daemon unreachable", type="about:blank#unreachable", url=base_url)
        self.reason = reason


__all__ = ["DaemonUnreachable", "HarborError"]
