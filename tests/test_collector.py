"""The Tracking API in process (Starlette's TestClient, real SQLite): routes, auth, normalisation,
CORS, the collector prefix, rate limiting, client metrics, dedupe over HTTP, the admin read API.

Each error has its own test: status, ``code``, ``message``, CORS header, and nothing stored.
"""

from __future__ import annotations

import base64
import gzip
import os
import time
from datetime import datetime, timedelta, timezone

import orjson
import pytest
from sqlalchemy import text
from starlette.testclient import TestClient

from server.app import create_app
from server.config import Config
from server.store import events, tokens, workspace

pytestmark = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)

PLANES = ["server.health", "server.admin", "server.ingest"]
ORIGIN = "https://shop.example"


class Tracking:
    """A running collector app with one source; ``post`` sends raw JSON the way browsers do."""

    def __init__(self, client: TestClient, engine, source: dict):
        self.client, self.engine, self.source = client, engine, source
        self.key = source["write_key"]
        self.token = tokens.create_token(engine, "tracking-test")

    def post(self, path: str, body, *, key: bool = True, headers: dict | None = None, raw: bytes | None = None):
        if raw is None:
            if key and isinstance(body, dict):
                body = {"writeKey": self.key, **body}
            raw = orjson.dumps(body)
        return self.client.post(
            path, content=raw, headers={"Content-Type": "text/plain", "Origin": ORIGIN, **(headers or {})}
        )

    def stored(self) -> list[dict]:
        return [e["event"] for e in reversed(events.list_events(self.engine, self.source["id"], limit=1000))]


def _tracking(engine, catalog, **config):
    app = create_app(
        Config(database_url=str(engine.url), delivery_workers=False, **config),
        engine=engine, catalog=catalog, planes=PLANES,
    )
    source = workspace.create_source(engine, "Web")
    return app, source


@pytest.fixture
def tracking(engine, catalog):
    app, source = _tracking(engine, catalog)
    with TestClient(app, raise_server_exceptions=False) as client:
        yield Tracking(client, engine, source)


def assert_ok(response):
    assert response.status_code == 200, response.text
    assert response.content == b'{"success":true}'
    assert response.json() == {"success": True}
    assert response.headers["content-type"] == "application/json"
    assert response.headers["access-control-allow-origin"] == ORIGIN


def assert_refused(t: Tracking, response, status: int, code: str, words: str, index: int | None = None):
    """The error shape every client relies on, CORS included — and nothing of it stored."""
    assert response.status_code == status, response.text
    body = response.json()
    assert body["code"] == code, body
    assert words in body["message"], body["message"]
    if index is not None:
        assert body["index"] == index and body["message"].startswith(f"batch[{index}]: ")
    else:
        assert "index" not in body
    assert response.headers["access-control-allow-origin"] == ORIGIN
    assert events.count_events(t.engine) == 0
    return body


def iso_ms(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse(value: str) -> datetime:
    return datetime.fromisoformat(value)


# ---------------------------------------------------------------- routes and normalisation


@pytest.mark.parametrize(
    "path,kind",
    [
        ("identify", "identify"), ("i", "identify"), ("track", "track"), ("t", "track"),
        ("page", "page"), ("p", "page"), ("screen", "screen"), ("s", "screen"),
        ("group", "group"), ("g", "group"), ("alias", "alias"), ("a", "alias"),
    ],
)
def test_every_single_event_route_stores_its_type(tracking, path, kind):
    response = tracking.post(f"/v1/{path}", {"userId": "u1", "event": "Signed Up", "messageId": f"m-{path}"})
    assert_ok(response)
    [stored] = tracking.stored()
    assert stored["type"] == kind and stored["messageId"] == f"m-{path}" and stored["userId"] == "u1"


def test_the_route_decides_the_type_of_a_single_event(tracking):
    assert_ok(tracking.post("/v1/t", {"type": "identify", "anonymousId": "a", "event": "Clicked"}))
    assert [e["type"] for e in tracking.stored()] == ["track"]


@pytest.mark.parametrize("path", ["batch", "import", "b"])
def test_batch_routes_store_every_item_with_the_batch_context_merged(tracking, path):
    body = {
        "batch": [
            {"type": "identify", "userId": "u1", "traits": {"plan": "pro"}, "messageId": "b1",
             "context": {"library": {"name": "mine"}}, "integrations": {"Mixpanel": False}},
            {"type": "track", "anonymousId": "a1", "event": "Viewed", "messageId": "b2", "writeKey": tracking.key},
            {"type": "page", "userId": "u1", "name": "Home", "messageId": "b3", "sentAt": "2030-01-01T00:00:00Z"},
        ],
        "context": {"library": {"name": "batch-lib"}, "locale": "fr-FR"},
        "integrations": {"All": True, "Mixpanel": True},
        "sentAt": "2026-01-01T00:00:00.000Z",
    }
    assert_ok(tracking.post(f"/v1/{path}", body))
    first, second, third = tracking.stored()
    assert [e["messageId"] for e in (first, second, third)] == ["b1", "b2", "b3"]
    # The item's own keys win over the batch's.
    assert first["context"]["library"] == {"name": "mine"} and first["context"]["locale"] == "fr-FR"
    assert first["integrations"] == {"All": True, "Mixpanel": False}
    assert second["context"]["library"] == {"name": "batch-lib"}
    assert second["integrations"] == {"All": True, "Mixpanel": True}
    assert "writeKey" not in second
    assert first["sentAt"] == second["sentAt"] == "2026-01-01T00:00:00.000Z"
    assert third["sentAt"] == "2030-01-01T00:00:00Z"


def test_normalisation_ids_receivedAt_and_skew_corrected_timestamp(tracking):
    # The client's clock runs 1 h fast: it says the event happened at 12:00:00 and was sent at 12:00:05.
    before = datetime.now(timezone.utc)
    response = tracking.post("/v1/track", {
        "anonymousId": 1234, "userId": 42.0, "event": "Bought",
        "timestamp": "2026-06-01T12:00:00.000+00:00", "sentAt": "2026-06-01T12:00:05.000Z",
    })
    after = datetime.now(timezone.utc)
    assert_ok(response)
    [event] = tracking.stored()
    received = parse(event["receivedAt"])
    assert before - timedelta(milliseconds=1) <= received <= after
    assert event["receivedAt"].endswith("Z") and len(event["receivedAt"]) == len("2026-06-01T12:00:00.000Z")
    assert event["originalTimestamp"] == "2026-06-01T12:00:00.000+00:00"
    # timestamp = receivedAt − (sentAt − originalTimestamp) = receivedAt − 5 s
    assert parse(event["timestamp"]) == received - timedelta(seconds=5)
    assert event["messageId"].startswith("api-") and len(event["messageId"]) == len("api-") + 36
    assert event["userId"] == "42" and event["anonymousId"] == "1234"
    assert event["context"]["ip"] == "testclient"
    assert "writeKey" not in event
    [row] = events.list_events(tracking.engine, tracking.source["id"])
    assert row["message_id"] == event["messageId"] and row["type"] == "track"


def test_without_sentAt_the_client_time_is_kept_and_without_any_time_receivedAt_is_used(tracking):
    assert_ok(tracking.post("/v1/i", {"userId": "u", "timestamp": "2026-06-01T14:00:00+02:00"}))
    assert_ok(tracking.post("/v1/i", {"userId": "u"}))
    timed, untimed = tracking.stored()
    assert timed["timestamp"] == "2026-06-01T12:00:00.000Z"
    assert timed["originalTimestamp"] == "2026-06-01T14:00:00+02:00"
    assert untimed["timestamp"] == untimed["receivedAt"] and "originalTimestamp" not in untimed


def test_a_client_supplied_ip_is_kept(tracking):
    assert_ok(tracking.post("/v1/t", {"userId": "u", "event": "E", "context": {"ip": "203.0.113.9"}}))
    assert tracking.stored()[0]["context"]["ip"] == "203.0.113.9"


def test_json_whatever_the_content_type_gzip_and_basic_auth(tracking):
    body = orjson.dumps({"batch": [{"type": "track", "userId": "u", "event": "Zipped"}]})
    basic = base64.b64encode(f"{tracking.key}:".encode()).decode()
    for content_type in ("application/json", "text/plain;charset=UTF-8", "application/x-www-form-urlencoded"):
        response = tracking.post("/v1/batch", None, raw=gzip.compress(body), headers={
            "Content-Encoding": "gzip", "Authorization": f"Basic {basic}", "Content-Type": content_type,
        })
        assert_ok(response)
    assert [e["event"] for e in tracking.stored()] == ["Zipped"] * 3


def test_x_forwarded_for_is_used_only_when_the_proxy_is_trusted(engine, catalog):
    for trust, expected in ((False, "testclient"), (True, "198.51.100.7")):
        app, source = _tracking(engine, catalog, trust_proxy=trust)
        with TestClient(app) as client:
            response = client.post("/v1/t", json={"writeKey": source["write_key"], "userId": "u", "event": "E"},
                                   headers={"X-Forwarded-For": "10.9.9.9, 198.51.100.7"})
            assert response.status_code == 200
        [row] = events.list_events(engine, source["id"])
        assert row["event"]["context"]["ip"] == expected


# ---------------------------------------------------------------- one test per error


def test_malformed_json(tracking):
    body = assert_refused(tracking, tracking.post("/v1/t", None, raw=b'{"writeKey": "k", "event": '),
                          400, "malformed_json", "not valid JSON")
    assert body["error"]["code"] == "malformed_json"


def test_a_body_that_is_not_an_object(tracking):
    assert_refused(tracking, tracking.post("/v1/batch", None, raw=b"[1, 2]"), 400, "malformed_json",
                   "must be a JSON object, not an array")


def test_an_empty_body(tracking):
    assert_refused(tracking, tracking.post("/v1/t", None, raw=b""), 400, "malformed_json", "empty")


def test_an_event_over_32_kb(tracking):
    event = {"userId": "u", "event": "Big", "properties": {"blob": "x" * (32 * 1024)}}
    assert_refused(tracking, tracking.post("/v1/track", event), 400, "event_too_large", "limit is 32 KB")


def test_a_batch_item_over_32_kb_is_refused_alone_and_the_rest_stored(tracking):
    batch = [{"type": "track", "userId": "u", "event": "Small", "messageId": f"small-{i}"} for i in range(2)]
    batch.append({"type": "track", "userId": "u", "event": "Big", "messageId": "big-1",
                  "properties": {"blob": "x" * 33_000}})
    assert_ok(tracking.post("/v1/batch", {"batch": batch}))
    assert sorted(e["messageId"] for e in tracking.stored()) == ["small-0", "small-1"]
    answer = tracking.client.get(f"/api/v1/sources/{tracking.source['id']}/rejected-events",
                                 headers={"Authorization": f"Bearer {tracking.token}"})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["counts"] == {"event_too_large": 1} and body["total"] == 1
    [record] = body["events"]
    assert (record["message_id"], record["type"], record["event"], record["reason"]) == (
        "big-1", "track", "Big", "event_too_large")
    assert record["size"] > 33_000 and record["message"].startswith("batch[2]: ")
    assert "xxxx" not in answer.text  # the payload itself is not kept


def test_a_batch_over_4_mb(tracking):
    item = {"type": "track", "userId": "u", "event": "E", "properties": {"blob": "y" * 30_000}}
    assert_refused(tracking, tracking.post("/v1/batch", {"batch": [item] * 141}), 400, "batch_too_large",
                   "limit is 4 MB")


def test_a_gzipped_batch_over_4_mb_once_decompressed(tracking):
    raw = gzip.compress(orjson.dumps({"writeKey": tracking.key, "batch": [], "pad": " " * 4_300_000}))
    assert len(raw) < 20_000
    assert_refused(tracking, tracking.post("/v1/batch", None, raw=raw, headers={"Content-Encoding": "gzip"}),
                   400, "batch_too_large", "limit is 4 MB")


def test_bodies_over_128_kb_get_the_same_answers_from_the_thread_that_parses_them(tracking):
    # Over 128 KB, as sent or once decompressed, a body is gunzipped and parsed beside the event
    # loop (server/ingest/off_loop.py): its answers, errors included, must not change.
    zipped = {"Content-Encoding": "gzip"}

    def batch(tag: str, blob) -> bytes:
        items = [{"type": "track", "userId": "u", "event": tag, "messageId": f"{tag}-{n}", "properties": {"blob": blob()}}
                 for n in range(100)]
        return orjson.dumps({"writeKey": tracking.key, "batch": items})

    plain, expanding = batch("plain", lambda: "p" * 3000), gzip.compress(batch("expanding", lambda: "e" * 3000))
    incompressible = gzip.compress(batch("incompressible", lambda: os.urandom(1500).hex()))
    assert len(plain) > 256 * 1024 and len(expanding) < 128 * 1024 < len(incompressible)
    assert_ok(tracking.post("/v1/batch", None, raw=plain))
    assert_ok(tracking.post("/v1/batch", None, raw=expanding, headers=zipped))
    assert_ok(tracking.post("/v1/batch", None, raw=incompressible, headers=zipped))
    assert [e["event"] for e in tracking.stored()] == ["plain"] * 100 + ["expanding"] * 100 + ["incompressible"] * 100
    stored = events.count_events(tracking.engine)
    for raw, headers, code, words in (
        (plain[:-1], {}, "malformed_json", "not valid JSON"),
        (gzip.compress(plain[:-1]), zipped, "malformed_json", "not valid JSON"),
        (gzip.compress(plain[:-1] + b',"deep":' + b"[" * 70 + b"]" * 70 + b"}"), zipped, "invalid_event", "64 levels"),
        (gzip.compress(plain)[:-8], zipped, "invalid_gzip", "truncated"),
    ):
        response = tracking.post("/v1/batch", None, raw=raw, headers=headers)
        assert response.status_code == 400 and response.json()["code"] == code, response.text
        assert words in response.json()["message"]
    assert events.count_events(tracking.engine) == stored


def test_a_batch_over_2500_events(tracking):
    batch = [{"type": "track", "userId": "u", "event": "E"}] * 2501
    assert_refused(tracking, tracking.post("/v1/batch", {"batch": batch}), 400, "batch_too_many_events",
                   "limit is 2,500")


def test_a_call_without_userId_or_anonymousId(tracking):
    assert_refused(tracking, tracking.post("/v1/identify", {"traits": {"a": 1}, "userId": ""}), 400,
                   "no_user_anon_id", "needs a userId or an anonymousId")


def assert_refused_alone(tracking, path: str, batch: list, index: int, code: str, words: str) -> dict:
    """A batch with one item breaking a rule: 200, the others stored, that one refused on its
    own and recorded with the code a single-event route would answer (SDKs drop a batch answered
    400 whole: Segment stores the rest)."""
    for i, item in enumerate(batch):
        if i != index and isinstance(item, dict):
            item.setdefault("messageId", f"kept-{i}")
    assert_ok(tracking.post(path, {"batch": batch}))
    assert sorted(e["messageId"] for e in tracking.stored()) == sorted(f"kept-{i}" for i in range(len(batch))
                                                                      if i != index)
    answer = tracking.client.get(f"/api/v1/sources/{tracking.source['id']}/rejected-events",
                                 headers={"Authorization": f"Bearer {tracking.token}"}).json()
    assert answer["counts"] == {code: 1}
    [record] = answer["events"]
    assert record["reason"] == code and record["message"].startswith(f"batch[{index}]: ")
    assert words in record["message"], record["message"]
    return record


def test_a_batch_item_without_userId_or_anonymousId(tracking):
    batch = [{"type": "track", "userId": "u", "event": "E"}, {"type": "page", "name": "Home", "anonymousId": None},
             {"type": "page", "name": "Next", "anonymousId": "a"}]
    record = assert_refused_alone(tracking, "/v1/b", batch, 1, "no_user_anon_id",
                                  "A page call needs a userId or an anonymousId")
    assert (record["type"], record["event"]) == ("page", "Home")


def test_batch_items_breaking_the_single_event_rules_are_refused_alone(tracking):
    batch = [{"type": "track", "userId": "u", "event": "Fine", "messageId": "fine"},
             {"type": "track", "userId": "u", "event": "", "messageId": "no-name"},
             {"type": "track", "userId": "u", "event": "Long", "messageId": "m" * 101},
             {"type": "track", "userId": "u", "event": "T", "messageId": "bad-time", "timestamp": "yesterday"},
             {"type": "identify", "userId": "u", "traits": [1], "messageId": "bad-traits"}]
    assert_ok(tracking.post("/v1/batch", {"batch": batch}))
    assert [e["messageId"] for e in tracking.stored()] == ["fine"]
    answer = tracking.client.get(f"/api/v1/sources/{tracking.source['id']}/rejected-events",
                                 headers={"Authorization": f"Bearer {tracking.token}"}).json()
    assert answer["counts"] == {"missing_event": 1, "message_id_too_long": 1, "invalid_timestamp": 1,
                                "invalid_field": 1}
    assert sorted(r["message"][:8] for r in answer["events"]) == ["batch[1]", "batch[2]", "batch[3]", "batch[4]"]


def test_a_track_without_event(tracking):
    assert_refused(tracking, tracking.post("/v1/t", {"anonymousId": "a"}), 400, "missing_event",
                   "needs an event name")


def test_a_message_id_over_100_characters(tracking):
    assert_refused(tracking, tracking.post("/v1/t", {"anonymousId": "a", "event": "E", "messageId": "m" * 101}),
                   400, "message_id_too_long", "101 characters; it must be at most 100")


def test_a_type_that_is_not_one_of_the_six(tracking):
    batch = [{"type": "track", "userId": "u", "event": "E"}, {"type": "purchase", "userId": "u"}]
    assert_refused_alone(tracking, "/v1/batch", batch, 1, "invalid_type",
                         "type 'purchase'; it must be one of identify, track, page, screen, group, alias")


def test_a_batch_item_without_type(tracking):
    assert_refused_alone(tracking, "/v1/batch", [{"userId": "u"}], 0, "invalid_type", "no type")


def test_a_batch_that_is_not_an_array(tracking):
    assert_refused(tracking, tracking.post("/v1/batch", {"batch": {"type": "track"}}), 400, "invalid_batch",
                   "must be an array")


def test_a_batch_item_that_is_not_an_object(tracking):
    record = assert_refused_alone(tracking, "/v1/batch", [{"type": "track", "userId": "u", "event": "E"}, "oops"], 1,
                                  "invalid_event", "must be a JSON object, not a string")
    assert (record["message_id"], record["type"]) == (None, None)


def test_a_field_of_the_wrong_type(tracking):
    assert_refused(tracking, tracking.post("/v1/t", {"userId": "u", "event": "E", "properties": [1, 2]}), 400,
                   "invalid_field", "properties must be an object, not an array")


def test_a_timestamp_that_is_not_iso_8601(tracking):
    assert_refused(tracking, tracking.post("/v1/t", {"userId": "u", "event": "E", "timestamp": "yesterday"}), 400,
                   "invalid_timestamp", "'yesterday' is not an ISO 8601 time")


def test_broken_gzip(tracking):
    assert_refused(tracking, tracking.post("/v1/batch", None, raw=b"\x1f\x8b\x08garbage",
                                           headers={"Content-Encoding": "gzip"}),
                   400, "invalid_gzip", "not valid gzip")


def test_gzip_members_up_to_16_are_one_body_and_more_are_refused(tracking):
    body = orjson.dumps({"writeKey": tracking.key, "batch": [{"type": "track", "userId": "u", "event": "Cat"}]})
    members = [gzip.compress(body[i:i + 4]) for i in range(0, len(body), 4)]
    assert len(members) > 16
    zipped = {"Content-Encoding": "gzip"}
    assert_refused(tracking, tracking.post("/v1/batch", None, raw=b"".join(members), headers=zipped),
                   400, "invalid_gzip", "more than 16 members")
    # A body of empty members (1 MB of them: over 50,000) used to cost a copy of the rest of the
    # body per member — seconds of CPU — before being found empty.
    empty = gzip.compress(b"")
    assert_refused(tracking, tracking.post("/v1/batch", None, raw=empty * (1024 * 1024 // len(empty)), headers=zipped),
                   400, "invalid_gzip", "more than 16 members")
    sixteen = [gzip.compress(part) for part in (body[:10], body[10:20], body[20:])] + [empty] * 13
    assert_ok(tracking.post("/v1/batch", None, raw=b"".join(sixteen), headers=zipped))
    assert [e["event"] for e in tracking.stored()] == ["Cat"]


def test_an_unsupported_content_encoding(tracking):
    assert_refused(tracking, tracking.post("/v1/t", {"userId": "u", "event": "E"}, headers={"Content-Encoding": "br"}),
                   415, "unsupported_encoding", "'br' is not supported")


def test_no_write_key(tracking):
    assert_refused(tracking, tracking.post("/v1/t", {"userId": "u", "event": "E"}, key=False), 401,
                   "missing_write_key", "writeKey in the body or as the Basic auth user name")


def test_an_unknown_write_key(tracking):
    response = tracking.post("/v1/t", {"writeKey": "nope", "userId": "u", "event": "E"}, key=False)
    assert_refused(tracking, response, 401, "invalid_write_key", "No source has this write key")
    basic = base64.b64encode(b"also-nope:").decode()
    response = tracking.post("/v1/t", {"userId": "u", "event": "E"}, key=False,
                             headers={"Authorization": f"Basic {basic}"})
    assert_refused(tracking, response, 401, "invalid_write_key", "No source has this write key")


@pytest.mark.parametrize("path", ["/v1/batch", "/v1/import", "/v1/t", "/v1/track", "/v1/identify", "/v1/e"])
def test_a_basic_auth_value_that_is_not_ascii_is_a_missing_key_not_a_500(tracking, path):
    # The header is read as latin-1: a byte over 0x7F is a str base64 refuses with a plain ValueError.
    body = {"batch": [{"type": "track", "userId": "u", "event": "e"}]}
    for value in (b"Basic \xe9", b"Basic \xc3\xa9==", "Basic ".encode() + base64.b64encode(b"\xff\xfe:")):
        response = tracking.post(path, body, key=False, headers={"Authorization": value})
        assert_refused(tracking, response, 401, "missing_write_key", "Basic auth user name")


def test_a_disabled_source(tracking):
    workspace.update_source(tracking.engine, tracking.source["id"], enabled=False)
    assert_refused(tracking, tracking.post("/v1/t", {"userId": "u", "event": "E"}), 403, "source_disabled",
                   "This source is disabled")


def test_a_method_other_than_post(tracking):
    response = tracking.client.get("/v1/track", headers={"Origin": ORIGIN})
    assert_refused(tracking, response, 405, "method_not_allowed", "GET is not allowed here; send POST")


# ---------------------------------------------------------------- write keys: cache and changes


def test_settings_changes_reach_the_key_cache_at_once(tracking):
    event = {"userId": "u", "event": "E"}
    assert_ok(tracking.post("/v1/t", event))  # the key is now cached as enabled
    workspace.update_source(tracking.engine, tracking.source["id"], enabled=False)
    assert tracking.post("/v1/t", event).status_code == 403
    workspace.update_source(tracking.engine, tracking.source["id"], enabled=True)
    assert_ok(tracking.post("/v1/t", event))
    old_key = tracking.key
    rotated = workspace.rotate_write_key(tracking.engine, tracking.source["id"])
    assert tracking.post("/v1/t", {"writeKey": old_key, **event}, key=False).json()["code"] == "invalid_write_key"
    assert_ok(tracking.post("/v1/t", {"writeKey": rotated["write_key"], **event}, key=False))
    # An unknown key that becomes a source's key (a new source) is not stuck as "unknown".
    unknown = tracking.post("/v1/t", {"writeKey": "future-key", **event}, key=False)
    assert unknown.status_code == 401
    with tracking.engine.begin() as conn:
        conn.execute(text("UPDATE sources SET write_key = 'future-key' WHERE id = :id"), {"id": tracking.source["id"]})
    workspace.update_source(tracking.engine, tracking.source["id"], name="Renamed")  # announces 'future-key'
    assert_ok(tracking.post("/v1/t", {"writeKey": "future-key", **event}, key=False))
    assert len(tracking.stored()) == 4


def test_changes_made_by_another_process_apply_after_the_ttl(tracking):
    tracking.client.app.state.collector.keys.ttl = 0.3
    event = {"userId": "u", "event": "E"}
    assert_ok(tracking.post("/v1/t", event))
    # Another process disables the source: no in-process announcement reaches this one.
    with tracking.engine.begin() as conn:
        conn.execute(text("UPDATE sources SET enabled = false WHERE id = :id"), {"id": tracking.source["id"]})
    time.sleep(0.4)
    assert tracking.post("/v1/t", event).json()["code"] == "source_disabled"


# ---------------------------------------------------------------- CORS, prefix, metrics


def test_preflight_allows_post_with_the_segment_headers_and_is_cacheable(tracking):
    response = tracking.client.options("/v1/t", headers={
        "Origin": ORIGIN, "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization,content-type,x-retry-count,x-custom",
    })
    assert response.status_code == 204
    assert response.headers["access-control-allow-origin"] == ORIGIN
    assert "POST" in response.headers["access-control-allow-methods"]
    allowed = {h.strip() for h in response.headers["access-control-allow-headers"].split(",")}
    assert {"authorization", "content-type", "x-retry-count", "x-custom"} <= allowed
    assert int(response.headers["access-control-max-age"]) >= 600
    assert response.headers["access-control-allow-credentials"] == "true"
    assert events.count_events(tracking.engine) == 0


def test_without_an_origin_any_origin_is_allowed(tracking):
    response = tracking.client.post("/v1/t", json={"writeKey": tracking.key, "userId": "u", "event": "E"})
    assert response.status_code == 200 and response.headers["access-control-allow-origin"] == "*"


def test_the_collector_prefix_serves_the_same_routes(engine, catalog):
    app, source = _tracking(engine, catalog, collector_prefix="/ingest")
    with TestClient(app) as client:
        for path in ("/ingest/t", "/v1/t", "/ingest/batch"):
            body = {"writeKey": source["write_key"], "userId": "u", "event": "E",
                    "batch": [{"type": "track", "userId": "u", "event": "E"}]}
            response = client.post(path, json=body, headers={"Origin": ORIGIN})
            assert response.status_code == 200 and response.headers["access-control-allow-origin"] == ORIGIN
        assert client.options("/ingest/b", headers={"Origin": ORIGIN}).status_code == 204
        assert client.post("/elsewhere/t", json={}).status_code == 404
    assert events.count_events(engine, source["id"]) == 3


def test_client_metrics_are_counted_and_never_stored(tracking):
    from prometheus_client import REGISTRY

    def count():
        return REGISTRY.get_sample_value("switchboard_client_metrics_total",
                                         {"metric": "analytics_js.invoke.track"}) or 0

    before = count()
    body = {"series": [{"type": "Counter", "metric": "analytics_js.invoke.track", "value": 3, "tags": {}},
                       {"type": "Counter", "metric": "analytics_js.invoke.page", "value": 1, "tags": {}}]}
    assert_ok(tracking.post("/v1/m", body, key=False))
    assert count() == before + 3
    assert events.count_events(tracking.engine) == 0
    assert tracking.post("/v1/m", None, raw=b"not json").json()["code"] == "malformed_json"


# ---------------------------------------------------------------- rate limit


def test_rate_limit_per_write_key(engine, catalog):
    app, source = _tracking(engine, catalog, rate_limit=3)
    other = workspace.create_source(engine, "Other")
    with TestClient(app) as client:
        def send(key):
            return client.post("/v1/t", json={"writeKey": key, "userId": "u", "event": "E"},
                               headers={"Origin": ORIGIN})

        answers = [send(source["write_key"]) for _ in range(4)]
        assert [r.status_code for r in answers[:3]] == [200, 200, 200]
        limited = answers[3]
        assert limited.status_code == 429
        assert limited.json()["code"] == "rate_limited" and "3 requests a second" in limited.json()["message"]
        assert int(limited.headers["retry-after"]) >= 1
        assert int(limited.headers["x-ratelimit-reset"]) >= 1
        assert limited.headers["access-control-allow-origin"] == ORIGIN
        assert "X-RateLimit-Reset" in limited.headers["access-control-expose-headers"]
        assert send(other["write_key"]).status_code == 200  # another key has its own budget
        time.sleep(0.4)  # 3 tokens a second: one is back
        assert send(source["write_key"]).status_code == 200
    assert events.count_events(engine, source["id"]) == 4


# ---------------------------------------------------------------- dedupe over HTTP


def test_a_duplicate_is_acknowledged_and_stored_once_then_stored_again_after_the_window(engine, catalog):
    app, source = _tracking(engine, catalog, dedupe_window=1.0)
    event = {"writeKey": source["write_key"], "userId": "u", "event": "E", "messageId": "same-id"}
    with TestClient(app) as client:
        for _ in range(3):
            assert client.post("/v1/t", json=event).json() == {"success": True}
        batch = {"writeKey": source["write_key"], "batch": [{**event, "type": "track"}] * 2}
        assert client.post("/v1/batch", json=batch).json() == {"success": True}
        assert events.count_events(engine, source["id"]) == 1
        time.sleep(1.1)
        assert client.post("/v1/t", json=event).json() == {"success": True}
        assert client.post("/v1/t", json=event).json() == {"success": True}
    assert [e["message_id"] for e in events.list_events(engine, source["id"])] == ["same-id", "same-id"]


# ---------------------------------------------------------------- storage failure


def test_when_storage_fails_the_client_is_told_to_retry_and_nothing_is_acknowledged(tracking):
    with tracking.engine.begin() as conn:
        conn.execute(text("ALTER TABLE events RENAME TO events_away"))
    try:
        response = tracking.post("/v1/t", {"userId": "u", "event": "E", "messageId": "retry-me"})
        assert response.status_code == 503
        assert response.json()["code"] == "storage_unavailable"
        assert response.headers["retry-after"] == "5"
        assert response.headers["access-control-allow-origin"] == ORIGIN
    finally:
        with tracking.engine.begin() as conn:
            conn.execute(text("ALTER TABLE events_away RENAME TO events"))
    # The failed transaction claimed nothing: the retry is stored, not taken for a duplicate.
    assert_ok(tracking.post("/v1/t", {"userId": "u", "event": "E", "messageId": "retry-me"}))
    assert [e["messageId"] for e in tracking.stored()] == ["retry-me"]


# ---------------------------------------------------------------- admin read API


def test_admin_events_api_newest_first_with_type_limit_and_paging(tracking):
    token = tokens.create_token(tracking.engine, "t")
    batch = [{"type": "track" if i % 2 else "page", "userId": "u", "event": f"E{i}", "messageId": f"m{i}"}
             for i in range(7)]
    assert_ok(tracking.post("/v1/batch", {"batch": batch}))
    api = f"/api/v1/sources/{tracking.source['id']}/events"
    auth = {"Authorization": f"Bearer {token}"}

    assert tracking.client.get(api).status_code == 401
    page = tracking.client.get(api, params={"limit": 3}, headers=auth).json()
    assert [e["message_id"] for e in page["events"]] == ["m6", "m5", "m4"]
    assert page["events"][0]["event"]["event"] == "E6" and page["events"][0]["type"] == "page"
    rest = tracking.client.get(api, params={"limit": 3, "before": page["next_before"]}, headers=auth).json()
    assert [e["message_id"] for e in rest["events"]] == ["m3", "m2", "m1"]
    tracks = tracking.client.get(api, params={"type": "track"}, headers=auth).json()
    assert [e["message_id"] for e in tracks["events"]] == ["m5", "m3", "m1"] and tracks["next_before"] is None

    bad = tracking.client.get(api, params={"limit": "0"}, headers=auth)
    assert bad.status_code == 400 and bad.json()["code"] == "invalid_parameter"
    bad = tracking.client.get(api, params={"type": "purchase"}, headers=auth)
    assert bad.status_code == 400 and bad.json()["field"] == "type"
    missing = tracking.client.get("/api/v1/sources/999/events", headers=auth)
    assert missing.status_code == 404 and missing.json()["code"] == "not_found"
