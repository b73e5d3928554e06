"""The Tracking API over real sockets: a ``switchboard serve`` subprocess (uvicorn), Segment's own
analytics-python as the client, and kill -9 in the middle of a stream of sends."""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter
from datetime import datetime, timedelta, timezone

import httpx
import pytest
from segment.analytics import Client
from segment.analytics import request as segment_request
from segment.analytics.request import APIError

from server.store import events, open_store, rejections, workspace

SERVER_ENV = {"SWITCHBOARD_DELIVERY_WORKERS": "false"}


def _database(url: str):
    engine = open_store(url)
    source = workspace.create_source(engine, "Backend")
    return engine, source


def _by_message_id(engine, source_id) -> dict[str, dict]:
    return {e["message_id"]: e["event"] for e in events.list_events(engine, source_id, limit=1000)}


def _close(moment: str, expected: datetime, slack: float = 2.0) -> bool:
    return abs((datetime.fromisoformat(moment) - expected).total_seconds()) <= slack


@pytest.mark.parametrize("gzip", [False, True], ids=["plain", "gzip"])
def test_analytics_python_sends_every_call_type_in_batches(live_server_factory, sqlite_url, gzip):
    engine, source = _database(sqlite_url)
    server = live_server_factory(sqlite_url, **SERVER_ENV)
    failures: list = []
    client = Client(source["write_key"], host=server.url, gzip=gzip, upload_size=3, upload_interval=0.05,
                    max_retries=1, on_error=lambda error, batch: failures.append(error))
    when = datetime.now(timezone.utc) - timedelta(minutes=10)
    calls = [
        client.identify("u1", {"plan": "pro", "email": "a@example.com"}, timestamp=when),
        client.track("u1", "Order Completed", {"revenue": 42.5, "items": [1, 2]}, timestamp=when,
                     context={"campaign": {"name": "spring"}}),
        client.track(anonymous_id="anon-7", event="Viewed", message_id="my-own-id-1"),
        client.page("u1", "Docs", "Install", {"url": "https://example.com/docs"}, timestamp=when),
        client.screen("u1", "Settings", "Account", {"dark": True}, timestamp=when),
        client.group("u1", "g-9", {"name": "Acme"}, timestamp=when),
        client.alias("old-id", "u1", timestamp=when),
    ]
    client.flush()
    client.shutdown()
    assert failures == []
    sent = [message for ok, message in calls if ok]
    assert len(sent) == 7

    stored = _by_message_id(engine, source["id"])
    assert set(stored) == {m["messageId"] for m in sent}
    assert "my-own-id-1" in stored
    for message in sent:
        event = stored[message["messageId"]]
        assert event["type"] == message["type"]
        for field in ("userId", "anonymousId", "event", "name", "category", "groupId", "previousId",
                      "properties", "traits", "integrations"):
            if field in message:
                assert event[field] == message[field], field
        assert event["context"]["library"]["name"] == "analytics-python"
        assert event["context"]["ip"] == "127.0.0.1"
        assert "writeKey" not in event
        assert event["originalTimestamp"] == message["timestamp"]
        assert event["sentAt"]  # the batch's sentAt, applied to each item
        # Same clock on both ends: the corrected time is the time of the call.
        assert _close(event["timestamp"], datetime.fromisoformat(message["timestamp"]))
        assert _close(event["receivedAt"], datetime.now(timezone.utc), 30)
    assert stored["my-own-id-1"]["event"] == "Viewed" and stored["my-own-id-1"]["anonymousId"] == "anon-7"
    assert stored[sent[1]["messageId"]]["context"]["campaign"] == {"name": "spring"}
    engine.dispose()


class _FastClock(datetime):
    """A client whose clock runs one hour ahead (patched into analytics-python's sentAt)."""

    @classmethod
    def now(cls, tz=None):
        return datetime.now(tz) + timedelta(hours=1)


def test_a_client_clock_running_an_hour_fast_is_corrected(live_server_factory, sqlite_url, monkeypatch):
    engine, source = _database(sqlite_url)
    server = live_server_factory(sqlite_url, **SERVER_ENV)
    monkeypatch.setattr(segment_request, "datetime", _FastClock)
    client = Client(source["write_key"], host=server.url, sync_mode=True, max_retries=0)
    true_time = datetime.now(timezone.utc) - timedelta(minutes=5)
    _, message = client.track("u1", "Late", timestamp=true_time + timedelta(hours=1))  # what the fast clock says
    event = _by_message_id(engine, source["id"])[message["messageId"]]
    assert event["originalTimestamp"] == message["timestamp"]
    assert _close(event["timestamp"], true_time)
    assert not _close(event["timestamp"], true_time + timedelta(hours=1), 3000)
    engine.dispose()


def test_analytics_python_reads_our_errors(live_server_factory, sqlite_url):
    engine, source = _database(sqlite_url)
    server = live_server_factory(sqlite_url, **SERVER_ENV)
    client = Client("not-a-key", host=server.url, sync_mode=True, max_retries=0)
    with pytest.raises(APIError) as caught:
        client.track("u1", "E")
    assert (caught.value.status, caught.value.code) == (401, "invalid_write_key")
    # An event that breaks a rule inside a batch (analytics-python always sends batches) is
    # refused alone: the upload succeeds, the others in it are stored, the refusal is recorded.
    errors: list = []
    client = Client(source["write_key"], host=server.url, max_retries=0, upload_size=10,
                    on_error=lambda exc, batch: errors.append(exc))
    client.track("u1", "Kept", message_id="kept-1")
    client.track("u1", "E", message_id="x" * 101)
    client.track("u1", "Kept", message_id="kept-2")
    client.flush()
    client.shutdown()
    assert errors == []
    assert sorted(e["message_id"] for e in events.list_events(engine, source["id"])) == ["kept-1", "kept-2"]
    [refused] = rejections.recent(engine, source["id"])
    assert refused["reason"] == "message_id_too_long" and "messageId is 101 characters" in refused["message"]
    engine.dispose()


@pytest.mark.parametrize("database", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_kill_9_while_sending_loses_nothing_acknowledged(live_server_factory, sqlite_url, request, database):
    url = sqlite_url if database == "sqlite" else request.getfixturevalue("pg").create_database()
    engine, source = _database(url)
    server = live_server_factory(url, **SERVER_ENV)
    acked: list[str] = []
    attempted: list[list[str]] = []
    killed = threading.Event()
    lock = threading.Lock()

    def sender(n: int):
        with httpx.Client(base_url=server.url, timeout=5) as http:
            while not killed.is_set():
                ids = [f"k{n}-{uuid.uuid4().hex[:12]}" for _ in range(1 + len(attempted) % 5)]
                with lock:
                    attempted.append(ids)
                batch = [{"type": "track", "userId": f"u{n}", "event": "Tick", "messageId": m} for m in ids]
                try:
                    response = http.post("/v1/batch", json={"writeKey": source["write_key"], "batch": batch})
                except httpx.HTTPError:
                    return  # the server is gone
                if response.status_code == 200:
                    with lock:
                        acked.extend(ids)

    threads = [threading.Thread(target=sender, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 30
    while len(acked) < 400 and time.monotonic() < deadline:
        time.sleep(0.01)
    server.kill()  # SIGKILL, mid-stream
    killed.set()
    for t in threads:
        t.join(10)
    assert len(acked) >= 400

    restarted = live_server_factory(url, **SERVER_ENV)
    counts = Counter(e["message_id"] for e in events.read_after(engine, 0, limit=1_000_000))
    missing = [m for m in acked if counts[m] != 1]
    assert missing == [], f"{len(missing)} acknowledged events not stored exactly once"
    # The client now retries everything it ever tried: acknowledged ones are duplicates.
    with httpx.Client(base_url=restarted.url, timeout=10) as http:
        for ids in attempted:
            batch = [{"type": "track", "userId": "u", "event": "Tick", "messageId": m} for m in ids]
            response = http.post("/v1/batch", json={"writeKey": source["write_key"], "batch": batch})
            assert response.json() == {"success": True}
    counts = Counter(e["message_id"] for e in events.read_after(engine, 0, limit=1_000_000))
    every = [m for ids in attempted for m in ids]
    assert sorted(counts) == sorted(every) and set(counts.values()) == {1}
    engine.dispose()
