"""When a request is asked again, and after how long.

Transient failures are worth another attempt: connection errors, 5xx and 429. A request that may
have reached the daemon is repeated only when that is harmless (an idempotent method, or a POST with
an ``Idempotency-Key``); one that never left this machine (:func:`_connection_failed`) always may be.
Between attempts the client waits what the daemon asked for in ``Retry-After`` (capped), else an
exponential backoff with jitter (:class:`_WaitRetryAfter`, a tenacity wait).
"""

from __future__ import annotations

import email.utils
import time

import httpx
from tenacity import RetryCallState, wait_exponential_jitter

#: Methods that may be sent again whatever became of the first attempt.
_IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})

# The longest Retry-After we obey as asked; a daemon asking for more is waited on at this pace.
_MAX_RETRY_AFTER = 30.0


class _Retryable(Exception):
    """An answer worth asking again for (5xx, 429); carries it and the ``Retry-After`` it asked for."""

    def __init__(self, response: httpx.Response) -> None:
        super().__init__(response.status_code)
        self.response = response
        self.retry_after = _retry_after(response.headers.get("Retry-After"))


def _retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or an HTTP date); ``None`` if absent/bad."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return min(float(value), _MAX_RETRY_AFTER)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, min(when.timestamp() - time.time(), _MAX_RETRY_AFTER))


class _WaitRetryAfter:
    """tenacity wait: the daemon's ``Retry-After`` when it gave one, else exponential backoff with jitter."""

    def __init__(self, initial: float, maximum: float) -> None:
        self._backoff = wait_exponential_jitter(multiplier=initial, max=maximum, jitter=initial)

    def __call__(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome is not None else None
        if isinstance(exc, _Retryable) and exc.retry_after is not None:
            return exc.retry_after
        return float(self._backoff(state))


def _connection_failed(exc: BaseException) -> bool:
    """The request never reached the daemon: repeating it cannot do anything twice."""
    return isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout))
