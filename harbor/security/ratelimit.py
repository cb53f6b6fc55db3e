"""Token buckets per principal, and a count of open event streams per principal.

Why not pyrate-limiter (installed, and well kept): its buckets are sliding-window logs that keep a
timestamp per request (memory grows with the burst for every principal), one bucket per key needs
a custom ``BucketFactory``, expiry runs on a "leaker" thread or an asyncio task, and its waiting is
asyncio-only. Under trio we only need a non-blocking "may this request go, and if not, how long
until it may?", which a token bucket answers in a few lines with two floats per principal.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

#: Most buckets kept; past this, full (idle) buckets are forgotten first: a full bucket is the same
#: as a new one, so forgetting it changes nothing for its owner.
MAX_BUCKETS = 10_000


@dataclass(slots=True)
class TokenBucket:
    """``burst`` tokens at most, refilled at ``rate`` per second; each request takes one."""

    tokens: float
    updated: float

    def take(self, rate: float, burst: int, now: float) -> float:
        """Take a token if there is one: returns 0, else the seconds until one is available."""
        self.tokens = min(float(burst), self.tokens + (now - self.updated) * rate)
        self.updated = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return 0.0
        return (1.0 - self.tokens) / rate


class RateLimiter:
    """One :class:`TokenBucket` per key (a principal, or a client address).

    Args:
        rate: tokens added per second; 0 disables limiting (every request passes).
        burst: bucket size: how many requests may arrive at once after a quiet spell.
        clock: monotonic seconds (tests pass their own).
    """

    def __init__(self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self.burst = max(1, burst)
        self._clock = clock
        self._buckets: dict[str, TokenBucket] = {}

    @property
    def enabled(self) -> bool:
        return self.rate > 0

    def take(self, key: str) -> float:
        """Charge one request to ``key``: 0 when it may go, else seconds to wait. Not a checkpoint."""
        if not self.enabled:
            return 0.0
        now = self._clock()
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= MAX_BUCKETS:
                self._forget_idle(now)
            bucket = self._buckets[key] = TokenBucket(float(self.burst), now)
        return bucket.take(self.rate, self.burst, now)

    def _forget_idle(self, now: float) -> None:
        refill = self.burst / self.rate
        for key in [k for k, b in self._buckets.items() if now - b.updated >= refill]:
            del self._buckets[key]
        while len(self._buckets) >= MAX_BUCKETS:  # all busy (many clients at once): drop the oldest
            del self._buckets[next(iter(self._buckets))]


def retry_after(seconds: float) -> str:
    """The ``Retry-After`` value: whole seconds, at least 1."""
    return str(max(1, math.ceil(seconds)))


class StreamSlots:
    """How many event streams each key holds open, against a ceiling (0 = no ceiling)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._open: dict[str, int] = {}

    def acquire(self, key: str) -> bool:
        """Take a slot for ``key``; ``False`` when it already holds ``limit`` streams."""
        count = self._open.get(key, 0)
        if self.limit and count >= self.limit:
            return False
        self._open[key] = count + 1
        return True

    def release(self, key: str) -> None:
        count = self._open.get(key, 0) - 1
        if count > 0:
            self._open[key] = count
        else:
            self._open.pop(key, None)

    def held(self, key: str) -> int:
        return self._open.get(key, 0)
