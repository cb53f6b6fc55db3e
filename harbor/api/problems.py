"""Problem+JSON (RFC 9457): the one shape of every error the API answers."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from http import HTTPStatus
from typing import Any

PROBLEM_CONTENT_TYPE = "application/problem+json"
TYPE_BASE = "https://agent-harbor.dev/problems/"


class Problem(Exception):
    """An error answered as Problem+JSON; raise it from handlers and the core alike.

    Args:
        status: the HTTP status.
        detail: a sentence for a person: what was wrong and, where possible, what to do.
        errors: field path (``repo.url``, ``agents[0].type``) → messages, for validation errors.
        kind: the last part of the ``type`` URI (default: derived from the status).
        headers: extra response headers (``Retry-After``, ``Allow``).
    """

    def __init__(self, status: int, detail: str | None = None, *,
                 errors: Mapping[str, Sequence[str]] | None = None, kind: str | None = None,
                 title: str | None = None, headers: Mapping[str, str] | None = None) -> None:
        phrase = HTTPStatus(status).phrase
        super().__init__(detail or phrase)
        self.status = status
        self.title = title or phrase
        self.detail = detail or phrase
        self.errors = {k: list(v) for k, v in (errors or {}).items()}
        self.kind = kind or phrase.lower().replace(" ", "-").replace("'", "")
        self.headers = dict(headers or {})

    def body(self, request_id: str | None = None) -> dict[str, Any]:
        doc: dict[str, Any] = {"type": TYPE_BASE + self.kind, "title": self.title, "status": self.status,
                               "detail": self.detail}
        if self.errors:
            doc["errors"] = self.errors
        if request_id:
            doc["requestId"] = request_id
        return doc


def not_found(what: str, ident: str) -> Problem:
    return Problem(404, f"{what} {ident!r} does not exist", kind="not-found")


def conflict(detail: str) -> Problem:
    return Problem(409, detail, kind="conflict")


def invalid(errors: Mapping[str, Sequence[str]], detail: str = "The request is not valid") -> Problem:
    return Problem(400, detail, errors=errors, kind="validation-error")
