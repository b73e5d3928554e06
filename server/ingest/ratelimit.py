"""Requests per second per write key: a token bucket per key, in this process.

A key gets ``rate`` tokens a second and may save up one second's worth (so a burst of ``rate``
requests passes). With several server processes each keeps its own buckets: the limit applies
per process.
"""

from __future__ import annotations

import math
import time


class RateLimiter:
    def __init__(self, rate: int, *, max_keys: int = 100_000):
        self.rate = rate
        self.max_keys = max_keys
        self._buckets: dict[str, tuple[float, float]] = {}  # key → (tokens, at)

    def wait(self, key: str) -> float:
        """0 if a request with ``key`` may pass now (and take a token), else seconds until it may."""
        if self.rate <= 0:
            return 0.0
        now = time.monotonic()
        tokens, at = self._buckets.get(key, (float(self.rate), now))
        tokens = min(float(self.rate), tokens + (now - at) * self.rate)
        if tokens >= 1.0:
            if len(self._buckets) >= self.max_keys and key not in self._buckets:
                self._buckets.clear()
            self._buckets[key] = (tokens - 1.0, now)
            return 0.0
        self._buckets[key] = (tokens, now)
        return (1.0 - tokens) / self.rate

    @staticmethod
    def headers(wait: float) -> dict[str, str]:
        """Retry-After and X-RateLimit-Reset, both in whole seconds (what Segment's clients read)."""
        seconds = str(max(1, math.ceil(wait)))
        return {"Retry-After": seconds, "X-RateLimit-Reset": seconds}
