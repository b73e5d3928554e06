"""Retry policy: which answers are worth another try, and when.

Retried: network errors, timeouts, 5xx, 408 and 429 — with exponential backoff and jitter,
honouring ``Retry-After``, until the retry window (config.retry_window, default 4 h) has passed
since the job was queued; then the job is a dead letter. Any other 4xx (and a 3xx: we do not
follow redirects to places a setting did not name) is permanent: a dead letter at once, with the
response kept so a person can see why.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from email.utils import parsedate_to_datetime

RETRYABLE_STATUSES = frozenset({408, 429})


def is_retryable_status(status: int) -> bool:
    return status >= 500 or status in RETRYABLE_STATUSES


def retry_after_seconds(value: str | None, now: datetime | None = None) -> float | None:
    """``Retry-After``: delay-seconds or an HTTP date; None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, (when - (now or datetime.now(timezone.utc))).total_seconds())


@dataclass(frozen=True)
class RetryPolicy:
    window: float = 4 * 3600.0  # seconds from queueing to dead letter
    base: float = 1.0  # first backoff, seconds
    cap: float = 600.0  # longest backoff between two attempts
    retry_after_cap: float = 3600.0  # a vendor asking for more than this is not believed

    def backoff(self, attempt: int) -> float:
        """Delay before attempt ``attempt + 1``: exponential, "equal jitter" (half fixed, half random)
        so a fleet of retries after an outage does not hit the vendor in lockstep."""
        delay = min(self.cap, self.base * (2 ** max(0, attempt - 1)))
        return delay / 2 + random.uniform(0, delay / 2)

    def next_attempt(
        self, queued_at: datetime, attempt: int, now: datetime, retry_after: float | None = None
    ) -> datetime | None:
        """When to try again, or None when the window is spent (→ dead letter)."""
        deadline = queued_at + timedelta(seconds=self.window)
        if now >= deadline:
            return None
        delay = self.backoff(attempt)
        if retry_after is not None:
            delay = max(delay, min(retry_after, self.retry_after_cap))
        # One last try at the window's end rather than none at all.
        return min(now + timedelta(seconds=delay), deadline)
