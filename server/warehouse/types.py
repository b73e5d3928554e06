"""Column types: inferred from a value, and values made to fit a column's type.

Five types, as in Segment's warehouses: ``boolean``, ``integer``, ``float``, ``timestamp``
(ISO-8601 strings) and ``text``. A column's type is set by the first non-null value it ever
receives and never changes. A later value of another type is cast when no information is lost
in a way a reader would not expect (integer → float, anything → text); otherwise it is stored
as null and the sync reports a notice. A load never fails because of a value's type.
"""

from __future__ import annotations

import math
import re
from functools import lru_cache
from datetime import datetime, timezone
from typing import Any

from server.api.client_time import parse_client_time

TYPES = ("boolean", "integer", "float", "timestamp", "text")
INT64 = (-(2**63), 2**63 - 1)

# Date, or date and time with optional seconds, fraction and zone ("2024-05-01",
# "2024-05-01T12:30:00.123Z", "2024-05-01 12:30:00+02:00"): the forms that make a property a
# timestamp. Stricter than the collector on purpose: a property "20240501" (ISO 8601's basic
# form, or an order number) stays text. Checked before parsing: cheap.
_ISO = re.compile(
    r"^\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:[.,]\d{1,9})?)?(?:Z|[+-]\d{2}(?::?\d{2})?)?)?$"
)


class Unfit(ValueError):
    """The value cannot be stored in a column of that type."""


def parse_timestamp(text: str) -> datetime | None:
    """An aware UTC datetime for a property written as an ISO-8601 time, None when it is not one."""
    return call_time(text) if _ISO.match(text) else None


@lru_cache(maxsize=4096)  # a batch's events share receivedAt, and sentAt often equals timestamp
def call_time(text: str) -> datetime | None:
    """A call's own time (``timestamp``, ``sentAt``, …) in UTC, read as the collector read it
    (server/api/client_time.py); None when it cannot be one."""
    moment = parse_client_time(text)
    if moment is None:
        return None
    try:
        # Near year 1 or 9999 the UTC time may not exist ("0001-01-01T00:00:00+01:00" is in
        # year 0): then it is no timestamp the warehouse can store, like any other non-time.
        return moment.astimezone(timezone.utc)
    except OverflowError:
        return None


def infer(value: Any) -> str:
    """The column type a first value implies."""
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer" if INT64[0] <= value <= INT64[1] else "float"
    if isinstance(value, float):
        return "float"
    if isinstance(value, datetime):
        return "timestamp"
    if isinstance(value, str) and parse_timestamp(value) is not None:
        return "timestamp"
    return "text"


def as_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)


def fit(value: Any, column_type: str) -> Any:
    """``value`` converted for a ``column_type`` column; raises Unfit if it cannot be."""
    if column_type == "text":
        text = value if isinstance(value, str) else as_text(value)
        # PostgreSQL text cannot hold NUL; drop it on both targets so they store the same.
        return text.replace("\x00", "") if "\x00" in text else text
    if column_type == "boolean":
        if isinstance(value, bool):
            return value
    elif column_type == "integer":
        if isinstance(value, int) and not isinstance(value, bool) and INT64[0] <= value <= INT64[1]:
            return value
    elif column_type == "float":
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            number = float(value)
            if math.isfinite(number):
                return number
    elif column_type == "timestamp":
        if isinstance(value, datetime):
            return value
        if isinstance(value, str):
            parsed = parse_timestamp(value)
            if parsed is not None:
                return parsed
    raise Unfit(f"{type_name(value)} value does not fit a {column_type} column")


def type_name(value: Any) -> str:
    return infer(value) if not isinstance(value, str) or parse_timestamp(value) else "text"
