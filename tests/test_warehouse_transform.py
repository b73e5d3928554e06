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


def test_a_property_whose_name_keeps_no_character_is_dropped_with_a_notice(wh):
    wh.emit(make_event("track", messageId="t1", event="Signed Up", properties={"名前": "n", "plan": "pro"}),
            make_event("identify", messageId="i1", userId="u1", traits={"地址": {"城市": "x"}, "email": "a@b.c"}))
    sync = wh.sync()
    assert sync["error"] is None
    assert wh.query("SELECT id, plan FROM signed_up") == [("t1", "pro")]
    assert wh.query("SELECT id, email FROM users") == [("u1", "a@b.c")]
    assert sorted(sync["notices"]) == [
        "identifies: dropped a property/trait whose name has no ASCII letter or digit ('地址.城市')",
        "signed_up: dropped a property/trait whose name has no ASCII letter or digit ('名前')",
        "users: dropped a property/trait whose name has no ASCII letter or digit ('地址.城市')",
    ]


def test_event_names_that_differ_only_after_63_characters_share_a_table_with_a_notice(wh):
    prefix = "Checkout Step Completed For The Spring Campaign With A Long Name "  # 63 characters once cut
    wh.emit(make_event("track", messageId="a", event=prefix + "Variant A"),
            make_event("track", messageId="b", event=prefix + "Variant B"),
            make_event("track", messageId="c", event="Short"))
    sync = wh.sync()
    assert sync["error"] is None
    [table] = [t for t in sync["rows"] if t not in ("tracks", "short")]
    assert len(table) == 63 and sync["rows"][table] == 2
    assert sorted(wh.query(f"SELECT id, event_text FROM {table}")) == [
        ("a", prefix + "Variant A"), ("b", prefix + "Variant B")]
    assert sorted(sync["notices"]) == [
        f"{table}: the event name {name!r} is longer than 63 characters once snake-cased and was cut; "
        f"events whose names differ only after that share this table (event_text keeps each full name)"
        for name in (prefix + "Variant A", prefix + "Variant B")]
