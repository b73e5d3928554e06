"""Values and the column types they get (server/warehouse/types.py), as a data engineer sees
them in the warehouse: what becomes a timestamp, what stays text, and that no value can make
a sync fail."""

from __future__ import annotations

from datetime import datetime, timezone

from test_warehouse_support import as_utc_text, make_event, wh  # noqa: F401

from server.store import warehouse as store
from server.warehouse.types import Unfit, fit, infer, parse_timestamp

# ISO times whose UTC equivalent falls outside years 1–9999: Python cannot represent them.
BEFORE_YEAR_1 = "0001-01-01T00:00:00+01:00"
AFTER_YEAR_9999 = "9999-12-31T23:59:59-01:00"


def test_a_time_outside_years_1_to_9999_in_utc_is_no_timestamp():
    for text in (BEFORE_YEAR_1, AFTER_YEAR_9999):
        assert parse_timestamp(text) is None
        assert infer(text) == "text"
        try:
            fit(text, "timestamp")
        except Unfit as exc:
            assert "text value does not fit a timestamp column" in str(exc)
        else:
            raise AssertionError(f"{text} fitted a timestamp column")
    # The edges themselves still are timestamps.
    assert parse_timestamp("0001-01-01T01:00:00+01:00") == datetime(1, 1, 1, tzinfo=timezone.utc)
    assert parse_timestamp("9999-12-31T22:59:59-01:00") == datetime(9999, 12, 31, 23, 59, 59, tzinfo=timezone.utc)


def test_far_times_load_as_text_or_null_and_later_events_still_load(wh):
    wh.emit(make_event("track", messageId="far1", event="Signed Up", userId="u1", properties={"d": BEFORE_YEAR_1}),
            make_event("track", messageId="far2", event="Signed Up", userId="u1",
                       properties={"d": AFTER_YEAR_9999, "at": "2024-05-01T10:00:00Z"}),
            make_event("track", messageId="far3", event="Signed Up", properties={"at": AFTER_YEAR_9999}),
            make_event("page", messageId="far4", sentAt=BEFORE_YEAR_1))
    sync = wh.sync()
    assert sync["error"] is None and sync["events"] == 4
    # A column first given a far time is text, holding what the client sent.
    assert sorted(wh.query("SELECT id, d FROM signed_up WHERE d IS NOT NULL")) == [
        ("far1", BEFORE_YEAR_1), ("far2", AFTER_YEAR_9999)]
    # A timestamp column cannot hold it: null, and the sync says so.
    assert [(i, as_utc_text(a)) for i, a in sorted(wh.query("SELECT id, at FROM signed_up WHERE id <> 'far1'"))] == [
        ("far2", "2024-05-01T10:00:00.000Z"), ("far3", None)]
    assert "signed_up.at: text value does not fit a timestamp column; stored as null" in sync["notices"]
    assert wh.query("SELECT id, sent_at FROM pages") == [("far4", None)]
    assert store.get_cursor(wh.engine, wh.destination["id"]) == 4

    wh.emit(make_event("track", messageId="after", event="Signed Up"))
    assert wh.sync()["error"] is None
    assert wh.query("SELECT id FROM signed_up WHERE id = 'after'") == [("after",)]
