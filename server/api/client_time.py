"""The times a client sends (``timestamp``, ``originalTimestamp``, ``sentAt``), read by one rule.

The collector (server/ingest/normalise.py) accepts an event only if its times parse here and
stores them as the client sent them; the warehouse (server/warehouse/transform.py) reads the
stored strings back with this same function. Two parsers would drift apart: the warehouse had
its own, stricter one, and times the collector had accepted (``20240501T120000Z``,
``2024-05-01T12:00:00,5Z``) reached the warehouse as null.

The rule is Python 3.11's ``datetime.fromisoformat``: ISO 8601's extended form
(``2024-05-01T12:00:00.5+02:00``) and basic form (``20240501T120000Z``), a comma or a point
before the fraction (digits past the sixth are dropped), a date alone, a week date. A time
without a zone is UTC.
"""

from __future__ import annotations

from datetime import datetime, timezone


def parse_client_time(text: str) -> datetime | None:
    """An aware datetime for a client's time, None when it is not ISO 8601 as we accept it."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)
