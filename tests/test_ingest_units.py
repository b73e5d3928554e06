"""The collector's small parts on their own: time formatting, skew correction edge cases, gzip
limits, the token bucket, ids, and the group-commit writer's hand-off and shutdown."""

from __future__ import annotations

import asyncio
import gzip
import time
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from server.errors import ApiError
from server.ingest.body import gunzip
from server.ingest.normalise import BatchDefaults, iso, normalise
from server.ingest.ratelimit import RateLimiter
from server.ingest.validate import id_text
from server.ingest.writer import GroupCommitWriter, WriterStopped
from server.store import events, open_store, workspace


@settings(max_examples=300, deadline=None)
@given(st.datetimes(timezones=st.timezones()))
def test_iso_matches_python_isoformat_in_utc_with_milliseconds(moment):
    try:
        expected = moment.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    except OverflowError:
        return  # not representable in UTC: normalise() refuses such times with a 400
    assert iso(moment) == expected


def _normalise(item, **kw):
    now = datetime(2026, 6, 1, 12, 0, 0, 500_000, tzinfo=timezone.utc)
    return normalise(item, index=kw.pop("index", None), route_type=kw.pop("route_type", "track"), received_at=now,
                     received_iso=iso(now), ip=kw.pop("ip", "192.0.2.1"), **kw)


def test_skew_correction_and_its_refusals():
    event = _normalise({"timestamp": "2026-06-01T11:00:00Z", "sentAt": "2026-06-01T11:00:02.250Z"})
    assert event["timestamp"] == "2026-06-01T11:59:58.250Z"  # received − 2.25 s
    with pytest.raises(ApiError) as caught:
        _normalise({"timestamp": "0001-01-01T00:00:00+01:00"}, index=4)
    assert caught.value.code == "invalid_timestamp" and caught.value.extra == {"index": 4}
    with pytest.raises(ApiError) as caught:
        _normalise({"timestamp": "0001-01-01T00:00:00Z", "sentAt": "9999-12-31T00:00:00Z"})
    assert caught.value.code == "invalid_timestamp"


def test_batch_defaults_are_checked_and_shared_by_items():
    defaults = BatchDefaults({"context": {"locale": "de"}, "integrations": {"All": False}, "sentAt": "2026-06-01T12:00:00Z"})
    first = _normalise({"context": {"ip": "203.0.113.1"}}, batch=defaults)
    second = _normalise({}, batch=defaults)
    assert first["context"] == {"locale": "de", "ip": "203.0.113.1"}
    assert second["context"] == {"locale": "de", "ip": "192.0.2.1"}
    assert defaults.context == {"locale": "de"}  # the batch's own dict is never changed
    assert first["integrations"] == second["integrations"] == {"All": False}
    with pytest.raises(ApiError) as caught:
        BatchDefaults({"context": "nope"})
    assert caught.value.code == "invalid_field" and "batch's context must be an object" in caught.value.message


def test_ids_become_strings():
    assert [id_text(v) for v in ("a", 42, 42.0, 4.5, 1e20)] == ["a", "42", "42", "4.5", "1e+20"]


def test_gunzip_handles_several_members_and_stops_at_the_limit():
    data = gzip.compress(b'{"a":') + gzip.compress(b"1}")
    assert gunzip(data, 100, "event_too_large", "event") == b'{"a":1}'
    with pytest.raises(ApiError) as caught:
        gunzip(gzip.compress(b" " * 10_000), 1000, "event_too_large", "event")
    assert caught.value.code == "event_too_large"
    with pytest.raises(ApiError) as caught:
        gunzip(gzip.compress(b"{}")[:-4], 1000, "event_too_large", "event")
    assert caught.value.code == "invalid_gzip"


def test_token_bucket_allows_a_burst_then_the_rate():
    limiter = RateLimiter(5)
    assert [limiter.wait("k") for _ in range(5)] == [0.0] * 5
    wait = limiter.wait("k")
    assert 0 < wait <= 0.2
    assert RateLimiter.headers(wait) == {"Retry-After": "1", "X-RateLimit-Reset": "1"}
    assert limiter.wait("other") == 0.0
    time.sleep(wait + 0.01)
    assert limiter.wait("k") == 0.0
    assert RateLimiter(0).wait("k") == 0.0


def test_the_writer_groups_concurrent_requests_and_refuses_after_stop(sqlite_url):
    engine = open_store(sqlite_url)
    source = workspace.create_source(engine, "w")
    writer = GroupCommitWriter(engine, dedupe_window=86400).start()
    now = datetime.now(timezone.utc)

    async def send_all():
        batches = [events.rows_for(source["id"], now, [{"messageId": f"m{i}", "type": "track"}]) for i in range(50)]
        batches.append(events.rows_for(source["id"], now, [{"messageId": "m0", "type": "track"}]))  # a duplicate
        return await asyncio.gather(*(writer.append(rows) for rows in batches))

    from prometheus_client import REGISTRY

    def counted(outcome):
        return REGISTRY.get_sample_value("switchboard_collector_events_total", {"outcome": outcome}) or 0

    before = counted("stored"), counted("duplicate")
    results = asyncio.run(send_all())
    assert results[:50] == [[True]] * 50 and results[50] == [False]
    assert (counted("stored") - before[0], counted("duplicate") - before[1]) == (50, 1)
    assert writer.commits < 51  # requests shared commits
    assert writer.rows_committed == 51
    writer.stop()

    async def late():
        return await writer.append(events.rows_for(source["id"], now, [{"messageId": "late", "type": "track"}]))

    with pytest.raises(WriterStopped):
        asyncio.run(late())
    assert events.count_events(engine) == 50
    engine.dispose()


def test_the_writer_prunes_expired_message_ids(sqlite_url):
    engine = open_store(sqlite_url)
    source = workspace.create_source(engine, "w")
    old = datetime.now(timezone.utc) - timedelta(seconds=10)
    events.append(engine, events.rows_for(source["id"], old, [{"messageId": "old", "type": "track"}]),
                  dedupe_window=5)
    writer = GroupCommitWriter(engine, dedupe_window=5, prune_every=0.05).start()
    try:
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            with engine.connect() as conn:
                if conn.execute(events.message_ids.select()).first() is None:
                    break
            time.sleep(0.05)
        else:
            pytest.fail("the expired message id was never pruned")
    finally:
        writer.stop()
    assert events.count_events(engine) == 1  # the event itself stays
    engine.dispose()
