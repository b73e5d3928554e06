"""Custom headers (webhooks): CR, LF and NUL, names that are not tokens, and framing or hop-by-hop
headers are refused when saved (422 invalid_header, never quoting the value: the headers
setting is secret), and a row saved before the rules existed becomes a dead letter with the
reason on its first attempt instead of four hours of retries — nothing reaches the vendor."""

from __future__ import annotations

import pytest

from delivery_flow import RunningService, append, jobs, source_with, wait_until
from delivery_vendor import Vendor, make_event
from server.store import delivery as store

pytestmark = pytest.mark.timeout(60)

BAD_HEADERS = [
    ({"X-Token": "abc\r\nHost: internal.example"}, "line break"),
    ({"X-Token": "abc\nX-Injected: 1"}, "line break"),
    ({"X-Token": "abc\rdef"}, "line break"),
    ({"X-Token": "abc\x00def"}, "NUL"),
    ({"X-Bad\r\nName": "s3cret-value"}, "not a valid HTTP token"),
    ({"X Bad": "s3cret-value"}, "not a valid HTTP token"),
    ({"X:Bad": "s3cret-value"}, "not a valid HTTP token"),
    ({"": "s3cret-value"}, "non-empty"),
    ({"Host": "internal.example"}, "set by Switchboard"),
    ({"content-length": "0"}, "set by Switchboard"),
    ({"Transfer-Encoding": "chunked"}, "set by Switchboard"),
    ({"Connection": "close"}, "set by Switchboard"),
    ({"Keep-Alive": "timeout=5"}, "set by Switchboard"),
    ({"Upgrade": "h2c"}, "set by Switchboard"),
    ({"TE": "trailers"}, "set by Switchboard"),
    ({"Trailer": "X-Foo"}, "set by Switchboard"),
    ({"Proxy-Authorization": "Basic eA=="}, "set by Switchboard"),
    ({"Proxy-Connection": "keep-alive"}, "set by Switchboard"),
]


@pytest.mark.parametrize("headers, why", BAD_HEADERS)
def test_a_bad_custom_header_is_refused_when_saved(client, headers, why):
    source = client.post("/api/v1/sources", json={"name": "Site"}).json()
    answer = client.post(f"/api/v1/sources/{source['id']}/destinations", json={
        "slug": "webhooks", "enabled": True,
        "settings": {"url": "https://hooks.example.com/in", "headers": {"X-Fine": "1", **headers}}})
    assert answer.status_code == 422, answer.text
    body = answer.json()
    assert body["code"] == "invalid_header" and body["field"] == "settings.headers"
    assert why in body["message"]
    for value in headers.values():
        assert value not in body["message"]  # a secret setting: its values are never echoed


def test_good_headers_are_saved_and_a_bad_update_keeps_them(client):
    source = client.post("/api/v1/sources", json={"name": "Site"}).json()
    created = client.post(f"/api/v1/sources/{source['id']}/destinations", json={
        "slug": "webhooks", "enabled": True,
        "settings": {"url": "https://hooks.example.com/in",
                     "headers": {"Authorization": "Bearer t0k3n", "X-Api-Key": "a b\tc", "X_Under~score!": "ok"}}})
    assert created.status_code == 201, created.text
    patched = client.patch(f"/api/v1/destinations/{created.json()['id']}",
                           json={"settings": {"headers": {"Host": "evil.example"}}})
    assert patched.status_code == 422 and patched.json()["code"] == "invalid_header"


@pytest.mark.parametrize("headers", [{"X-Token": "abc\r\nX-Injected: yes"}, {"Content-Length": "0"},
                                     {"Host": "internal.example"}])
def test_a_bad_header_saved_before_the_rules_is_a_dead_letter_at_once(engine, catalog, headers):
    with Vendor() as vendor:
        # Straight into the store, as an old row would be (the validator would refuse it).
        source, (dest,) = source_with(engine, {"slug": "webhooks",
                                               "settings": {"url": f"{vendor.url}/in", "headers": headers}})
        append(engine, source["id"], [make_event("track", event="Old Row")])
        with RunningService(engine, catalog):
            wait_until(lambda: [j for j in jobs(engine, dest["id"]) if j["status"] == store.DEAD], timeout=20,
                       what="the dead letter")
        assert vendor.snapshot() == []
    (job,) = jobs(engine, dest["id"])
    assert job["attempts"] == 1 and job["last_error"].startswith("refused: ")
    assert "header" in job["last_error"]
