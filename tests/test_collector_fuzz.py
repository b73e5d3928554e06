"""Property tests: whatever reaches the Tracking API — arbitrary bytes, arbitrary JSON, event-shaped
JSON with arbitrary values, arbitrary Basic auth values — no route answers 5xx, every 4xx carries ``code`` and ``message``,
and a 200 is exactly ``{"success": true}``."""

from __future__ import annotations

import gzip
import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import event as note_outcome
from hypothesis import strategies as st
from starlette.testclient import TestClient

from server.app import create_app
from server.ingest.collector import BATCH, SINGLE
from server.config import Config
from server.store import events, open_store, workspace

ROUTES = [f"/v1/{name}" for name in [*SINGLE, *BATCH, "m"]]
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.fixture(scope="module")
def fuzz(tmp_path_factory):
    url = f"sqlite:///{tmp_path_factory.mktemp('fuzz') / 'fuzz.db'}"
    engine = open_store(url)
    source = workspace.create_source(engine, "Fuzz")
    app = create_app(Config(database_url=url, delivery_workers=False), engine=engine,
                     planes=["server.health", "server.ingest"])
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client, source["write_key"], engine
    engine.dispose()


def check_answer(response) -> None:
    assert response.status_code < 500, response.text
    if response.status_code == 200:
        assert response.json() == {"success": True}
        return
    assert 400 <= response.status_code < 500
    body = response.json()
    assert isinstance(body["code"], str) and body["code"]
    assert isinstance(body["message"], str) and body["message"]


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=20,
)
times = st.one_of(json_values, st.datetimes().map(lambda d: d.isoformat()), st.datetimes().map(lambda d: d.isoformat()),
                  st.sampled_from(["2026-01-01T00:00:00Z", "0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00"]))
objects = st.dictionaries(st.text(max_size=8), json_values, max_size=3)
ids = st.text(min_size=1, max_size=8)
# Mostly plausible values (so that many examples pass validation and reach the store), and
# arbitrary JSON often enough to try every rule.
FIELDS = {
    "type": st.one_of(st.sampled_from(["identify", "track", "page", "screen", "group", "alias"]),
                      st.sampled_from(["track", "x", ""]), json_values),
    "userId": st.one_of(ids, ids, st.integers(), json_values),
    "anonymousId": st.one_of(ids, ids, json_values),
    "event": st.one_of(ids, ids, json_values),
    "messageId": st.one_of(st.text(max_size=120), st.integers(), st.floats(allow_nan=False, allow_infinity=False)),
    "timestamp": times,
    "sentAt": times,
    "originalTimestamp": times,
    "context": st.one_of(st.dictionaries(st.sampled_from(["ip", "library", "page"]), json_values), objects,
                         json_values),
    "integrations": st.one_of(objects, objects, json_values),
    "properties": st.one_of(objects, objects, json_values),
    "traits": st.one_of(objects, objects, json_values),
}
events_like = st.fixed_dictionaries({}, optional=FIELDS)


@FUZZ
@given(route=st.sampled_from(ROUTES), data=st.binary(max_size=600), zipped=st.booleans())
def test_arbitrary_bytes_never_5xx(fuzz, route, data, zipped):
    client, _, _ = fuzz
    headers = {"Content-Type": "text/plain"}
    if zipped:
        headers["Content-Encoding"] = "gzip"
    check_answer(client.post(route, content=data, headers=headers))


@FUZZ
@given(route=st.sampled_from([*ROUTES, "/v1/e"]),
       value=st.binary(max_size=40).filter(lambda v: not any(b in v for b in b"\r\n\x00")))
def test_arbitrary_basic_auth_values_never_5xx(fuzz, route, value):
    client, _, _ = fuzz
    body = b'{"batch":[{"type":"track","userId":"u","event":"e"}]}'
    check_answer(client.post(route, content=body, headers={"Authorization": b"Basic " + value}))


@FUZZ
@given(route=st.sampled_from(ROUTES), value=json_values, with_key=st.booleans())
def test_arbitrary_json_never_5xx(fuzz, route, value, with_key):
    client, key, _ = fuzz
    if with_key and isinstance(value, dict):
        value = {**value, "writeKey": key}
    check_answer(client.post(route, content=json.dumps(value).encode(), headers={"Content-Type": "text/plain"}))


@FUZZ
@given(route=st.sampled_from(ROUTES), event=events_like, batch=st.lists(events_like, max_size=4),
       top=st.fixed_dictionaries({}, optional={"context": json_values, "integrations": json_values,
                                               "sentAt": times}),
       zipped=st.booleans())
def test_event_shaped_json_never_5xx_and_a_refusal_stores_nothing(fuzz, route, event, batch, top, zipped):
    client, key, engine = fuzz
    body = {**event, **top, "writeKey": key, "batch": batch}
    raw = json.dumps(body).encode()
    headers = {"Content-Encoding": "gzip"} if zipped else {}
    before = events.count_events(engine)
    response = client.post(route, content=gzip.compress(raw) if zipped else raw, headers=headers)
    note_outcome(f"{response.status_code} {response.json().get('code', '')}")
    check_answer(response)
    if response.status_code != 200:
        assert events.count_events(engine) == before  # refused means nothing of it was stored
