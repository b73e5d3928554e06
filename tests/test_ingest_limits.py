"""The collector's input limits, attacked over real sockets: a ``switchboard serve`` subprocess on
127.0.0.1, on SQLite and PostgreSQL where the database matters.

- nesting deeper than 64 levels, and numbers no double holds: 400 ``invalid_event``, never a 500;
- an integer userId beyond 64 bits: refused, never stored rounded; one within 64 bits: kept exactly;
- a batch holding one 40 KB event among good ones: 200, the good ones stored, the big one counted
  and shown (admin API, debugger page, /metrics) without its payload;
- RudderStack-sized batches: 1 MB of 8 KB events all stored; the body limit is 4 MB.
"""

from __future__ import annotations

import json
import re
import uuid

import httpx
import orjson
import pytest

from server.config import Config
from server.store import events, open_store, tokens, workspace
from server.web import accounts

SERVER_ENV = {"SWITCHBOARD_DELIVERY_WORKERS": "false"}
PASSWORD = "correct horse battery staple"


class Site:
    """A live server, its database, one source and an admin token."""

    def __init__(self, factory, url: str, **env: str):
        self.engine = open_store(url)
        self.source = workspace.create_source(self.engine, "Backend")
        self.token = tokens.create_token(self.engine, "limits-test")
        self.server = factory(url, **SERVER_ENV, **env)
        self.http = httpx.Client(base_url=self.server.url, timeout=30)

    def post(self, path: str, body: dict | bytes) -> httpx.Response:
        # The standard library's json: orjson refuses to write the deepest bodies these tests send.
        raw = body if isinstance(body, bytes) else json.dumps({"writeKey": self.source["write_key"], **body}).encode()
        return self.http.post(path, content=raw, headers={"Content-Type": "application/json"})

    def admin(self, path: str) -> httpx.Response:
        return self.http.get(path, headers={"Authorization": f"Bearer {self.token}"})

    def stored(self) -> dict[str, dict]:
        return {e["message_id"]: e["event"] for e in events.list_events(self.engine, self.source["id"], limit=1000)}

    def close(self) -> None:
        self.http.close()
        self.engine.dispose()


@pytest.fixture
def site(live_server_factory, db_url):
    s = Site(live_server_factory, db_url)
    yield s
    s.close()


@pytest.fixture
def sqlite_site(live_server_factory, sqlite_url):
    accounts.ensure_admin(Config(database_url=sqlite_url, admin_password=PASSWORD), open_store(sqlite_url))
    s = Site(live_server_factory, sqlite_url)
    yield s
    s.close()


def _nested(levels: int) -> dict:
    """A properties value nested ``levels`` objects deep."""
    value: dict = {"leaf": 1}
    for _ in range(levels - 1):
        value = {"a": value}
    return value


def _assert_invalid_event(response: httpx.Response, *words: str) -> dict:
    assert response.status_code == 400, response.text
    body = response.json()
    assert body["code"] == "invalid_event", body
    for word in words:
        assert word in body["message"], body["message"]
    return body


def test_deep_nesting_is_a_400_naming_the_limit_not_a_500(site):
    # 400 levels: orjson parses it, but could not write it back (its limit is 254): used to be a 500.
    deep = {"userId": "u", "event": "Deep", "properties": _nested(400)}
    _assert_invalid_event(site.post("/v1/track", deep), "nested more than 64 levels")
    # In a batch, the deep item is refused alone (as an oversize one): SDKs drop a batch answered 400.
    good = {"type": "track", "userId": "u", "event": "Shallow", "messageId": "beside-deep"}
    assert site.post("/v1/batch", {"batch": [{"type": "track", **deep, "messageId": "deep"}, good]}).status_code == 200
    [record] = site.admin(f"/api/v1/sources/{site.source['id']}/rejected-events").json()["events"]
    assert record["message_id"] == "deep" and record["reason"] == "invalid_event"
    assert record["message"].startswith("batch[0]: ") and "62 levels" in record["message"]
    # Too deep anywhere else in a batch body (its context here), the whole body is refused.
    _assert_invalid_event(site.post("/v1/batch", {"batch": [good], "context": _nested(70)}), "64 levels")
    # Beyond what orjson parses at all (1024): the same answer, not "malformed JSON".
    raw = b'{"writeKey":"%s","userId":"u","event":"E","properties":' % site.source["write_key"].encode()
    raw += b"[" * 1100 + b"]" * 1100 + b"}"
    _assert_invalid_event(site.post("/v1/track", raw), "64 levels")
    raw = b'{"writeKey":"%s","batch":[%s]}' % (site.source["write_key"].encode(), b"[" * 1100 + b"]" * 1100)
    _assert_invalid_event(site.post("/v1/batch", raw), "64 levels")  # a batch too: nothing to tell apart
    # Arrays count like objects; the limit is exact: the body object is level 1.
    assert site.post("/v1/track", {"userId": "u", "event": "Ok", "messageId": "at-limit",
                                   "properties": _nested(63)}).status_code == 200
    _assert_invalid_event(site.post("/v1/track", {"userId": "u", "event": "E", "properties": _nested(64)}))
    # Brackets inside strings are text, not nesting: a string of 500 "[" is a fine property.
    assert site.post("/v1/track", {"userId": "u", "event": "Brackets", "messageId": "brackets",
                                   "properties": {"s": "[" * 500 + "{" * 500}}).status_code == 200
    stored = site.stored()
    assert set(stored) == {"at-limit", "brackets", "beside-deep"}
    assert stored["brackets"]["properties"]["s"] == "[" * 500 + "{" * 500


def test_an_integer_beyond_64_bits_never_becomes_a_rounded_id(site):
    too_big = 2**64 + 1
    for field in ("userId", "anonymousId", "messageId"):
        raw = b'{"writeKey":"%s","type":"track","event":"E","userId":"u","%s":%d}' % (
            site.source["write_key"].encode(), field.encode(), too_big)
        _assert_invalid_event(site.post("/v1/track", raw), field, "send it as a string")
    # In a batch, that item alone is refused (recorded with the same code); the answer is 200.
    raw = b'{"writeKey":"%s","batch":[{"type":"group","userId":"u","groupId":%d,"messageId":"rounded"}]}' % (
        site.source["write_key"].encode(), too_big)
    assert site.post("/v1/batch", raw).status_code == 200
    assert "rounded" not in site.stored()
    # Up to 2^64 - 1 the number is exact, and kept exactly as text.
    raw = b'{"writeKey":"%s","event":"E","messageId":"exact","userId":%d}' % (
        site.source["write_key"].encode(), 2**64 - 1)
    assert site.post("/v1/track", raw).status_code == 200
    assert site.stored()["exact"]["userId"] == str(2**64 - 1)


def test_numbers_that_do_not_fit_in_properties(site):
    # A number no double holds: 400 naming the problem.
    raw = b'{"writeKey":"%s","userId":"u","event":"E","properties":{"n":1e400}}' % site.source["write_key"].encode()
    _assert_invalid_event(site.post("/v1/track", raw), "too large")
    # An integer beyond 64 bits in properties becomes a double, as docs/collector.md says.
    raw = b'{"writeKey":"%s","userId":"u","event":"E","messageId":"big","properties":{"n":%d}}' % (
        site.source["write_key"].encode(), 2**64 + 1)
    assert site.post("/v1/track", raw).status_code == 200
    assert site.stored()["big"]["properties"]["n"] == float(2**64 + 1)


def test_one_40_kb_event_is_refused_alone_and_shown(sqlite_site):
    site = sqlite_site
    batch = [{"type": "track", "userId": f"u{i}", "event": "Small", "messageId": f"good-{i}"} for i in range(10)]
    batch.insert(4, {"type": "track", "userId": "u-big", "event": "Huge Upload", "messageId": "big-one",
                     "properties": {"blob": "z" * 40_000}})
    response = site.post("/v1/batch", {"batch": batch})
    assert response.status_code == 200 and response.json() == {"success": True}
    assert set(site.stored()) == {f"good-{i}" for i in range(10)}

    # The admin API: counts by reason and the record, without the payload.
    refused = site.admin(f"/api/v1/sources/{site.source['id']}/rejected-events").json()
    assert refused["counts"] == {"event_too_large": 1}
    [record] = refused["events"]
    assert (record["message_id"], record["event"], record["type"]) == ("big-one", "Huge Upload", "track")
    assert 40_000 < record["size"] < 41_000 and record["message"].startswith("batch[4]: ")
    assert "zzzz" not in orjson.dumps(refused).decode()

    # /metrics: the counter, by source and reason.
    metrics = site.admin("/metrics")
    assert metrics.status_code == 200
    line = f'switchboard_collector_rejected_events_total{{reason="event_too_large",source_id="{site.source["id"]}"}}'
    assert f"{line} 1.0" in metrics.text

    # The web app's debugger page, signed in as the admin.
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', site.http.get("/sign-in").text).group(1)
    signed = site.http.post("/sign-in", data={"csrf_token": csrf, "username": "admin", "password": PASSWORD,
                                              "next": "/sources"})
    assert signed.status_code in (200, 303), signed.text
    page = site.http.get(f"/sources/{site.source['id']}/debugger", headers={"Accept": "text/html"})
    assert page.status_code == 200
    assert "Refused events" in page.text and "big-one" in page.text and "Huge Upload" in page.text
    assert "event_too_large: 1" in page.text and "40," in page.text

    # A second such batch: the counter goes on.
    assert site.post("/v1/import", {"batch": batch[4:5]}).status_code == 200
    assert f"{line} 2.0" in site.admin("/metrics").text
    # A single-event endpoint still answers 400 for an oversize event.
    single = site.post("/v1/track", batch[4])
    assert single.status_code == 400 and single.json()["code"] == "event_too_large"


def _event_of(size: int, n: int, run: str) -> dict:
    return {"type": "track", "userId": f"user-{n}", "event": "Rudder Event", "messageId": f"{run}-{n}",
            "properties": {"payload": "r" * (size - 200)}}


def test_rudderstack_sized_batches(sqlite_site):
    site = sqlite_site
    run = uuid.uuid4().hex[:8]
    # 100 events of 8-10 KB: a 1 MB body (Segment's own 500 KB limit would have refused it whole).
    body = orjson.dumps({"writeKey": site.source["write_key"],
                         "batch": [_event_of(8000 + 50 * n, n, run) for n in range(100)]})
    assert 1_000_000 < len(body) < 1_200_000
    response = site.post("/v1/batch", body)
    assert response.status_code == 200, response.text
    assert len([m for m in site.stored() if m.startswith(run)]) == 100
    # Just under 4 MB: accepted; just over: a 400 that names the limit.
    under = [_event_of(30_000, n, "under") for n in range(139)]
    body = orjson.dumps({"writeKey": site.source["write_key"], "batch": under})
    assert 4 * 1024 * 1024 - 50_000 < len(body) <= 4 * 1024 * 1024
    assert site.post("/v1/batch", body).status_code == 200
    assert events.count_events(site.engine, site.source["id"]) == 239
    over = orjson.dumps({"writeKey": site.source["write_key"], "batch": under + [_event_of(30_000, n, "over") for n in range(2)]})
    assert len(over) > 4 * 1024 * 1024
    refused = site.post("/v1/batch", over)
    assert refused.status_code == 400 and refused.json()["code"] == "batch_too_large"
    assert "limit is 4 MB" in refused.json()["message"]
