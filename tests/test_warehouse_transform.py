"""An event's own times as the warehouse stores them (server/warehouse/transform.py): every time
the collector accepts reaches the warehouse, read by the collector's own rule."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest
from test_warehouse_support import as_utc_text, make_event, wh  # noqa: F401

from server.ingest.normalise import iso, normalise

RECEIVED = datetime(2024, 5, 1, 12, 0, 30, tzinfo=timezone.utc)

# What the client sends as timestamp and sentAt → what the warehouse must hold (UTC):
# original_timestamp (the client's time), sent_at, and timestamp, the collector's skew
# correction received_at − (sent_at − original_timestamp).
FORMATS = [
    ("20240501T120000Z", "20240501T120010Z",
     "2024-05-01T12:00:00.000Z", "2024-05-01T12:00:10.000Z", "2024-05-01T12:00:20.000Z"),
    ("2024-05-01T12:00:00,5Z", "2024-05-01T12:00:10,5Z",
     "2024-05-01T12:00:00.500Z", "2024-05-01T12:00:10.500Z", "2024-05-01T12:00:20.000Z"),
    ("20240501T140000.25+0200", "2024-05-01T12:00:10Z",
     "2024-05-01T12:00:00.250Z", "2024-05-01T12:00:10.000Z", "2024-05-01T12:00:20.250Z"),
    ("2024-05-01T12:00:00.123456789Z", "2024-05-01T12:00:10Z",
     "2024-05-01T12:00:00.123Z", "2024-05-01T12:00:10.000Z", "2024-05-01T12:00:20.123Z"),
    ("2024-05-01T12:00:00", "2024-05-01T12:00:10",
     "2024-05-01T12:00:00.000Z", "2024-05-01T12:00:10.000Z", "2024-05-01T12:00:20.000Z"),
    ("2024-W18-3", "2024-05-01T00:00:10Z",
     "2024-05-01T00:00:00.000Z", "2024-05-01T00:00:10.000Z", "2024-05-01T12:00:20.000Z"),
]


def _collected(message_id: str, timestamp: str, sent_at: str) -> dict:
    """The event as the collector stores it (accepted: normalise raised nothing)."""
    item = {"type": "track", "event": "Ts Fmt", "userId": "u1", "messageId": message_id,
            "timestamp": timestamp, "sentAt": sent_at}
    return normalise(item, index=None, route_type=None, received_at=RECEIVED, received_iso=iso(RECEIVED), ip=None)


def test_every_time_format_the_collector_accepts_reaches_the_warehouse(wh):
    wh.emit(*[_collected(f"f{i}", ts, sent) for i, (ts, sent, *_) in enumerate(FORMATS)], received_at=RECEIVED)
    sync = wh.sync()
    assert sync["error"] is None and sync["notices"] == []
    rows = {r[0]: [as_utc_text(v) for v in r[1:]] for r in wh.query(
        'SELECT id, original_timestamp, sent_at, "timestamp", received_at FROM ts_fmt')}
    for i, (_, _, original, sent, corrected) in enumerate(FORMATS):
        assert rows[f"f{i}"] == [original, sent, corrected, "2024-05-01T12:00:30.000Z"], FORMATS[i]


@pytest.mark.parametrize("sent_at", ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00"])
def test_a_call_time_that_cannot_be_stored_is_left_out_with_a_notice(wh, sent_at):
    wh.emit(make_event("page", messageId="p1", sentAt=sent_at))
    sync = wh.sync()
    assert sync["error"] is None
    assert wh.query("SELECT id, sent_at FROM pages") == [("p1", None)]
    assert sync["notices"] == [f"an event's sentAt {sent_at!r} is not a time the warehouse can store; left out"]
