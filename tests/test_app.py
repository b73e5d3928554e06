"""The assembled app (server/app.py): the shortcuts answer exactly like the router would.

The Tracking API's exact paths (``SwitchboardApp.fast_paths``) and the bundle's GET/HEAD
(``fast_matchers``) skip Starlette's middleware and router. These tests send the same requests
through the shortcut and through the normal route (an app served under a ``root_path`` never
takes a shortcut) and expect the same answers, and check that nothing else is short-cut.
"""

from __future__ import annotations

import pytest
from sqlalchemy import func, select
from starlette.testclient import TestClient

from server.app import create_app
from server.store import events, workspace

PLANES = ["server.cdn", "server.ingest", "server.health"]


@pytest.fixture
def app(config, engine, catalog):
    return create_app(config, engine=engine, catalog=catalog, planes=PLANES)


def _answers(client: TestClient, prefix: str, key: str) -> list[tuple[int, dict, str | None]]:
    """Status, JSON body and CORS header of a few good and bad Tracking API requests."""
    cases = [
        ("/v1/t", {"writeKey": key, "type": "track", "event": "E", "userId": "u", "messageId": f"{prefix}-1"}),
        ("/v1/track", {"writeKey": key, "event": "E", "anonymousId": "a", "messageId": f"{prefix}-2"}),
        ("/v1/batch", {"writeKey": key, "batch": [{"type": "page", "userId": "u", "messageId": f"{prefix}-3"}]}),
        ("/v1/identify", {"writeKey": "nope", "userId": "u"}),
        ("/v1/track", {"writeKey": key, "userId": "u"}),  # no event name
        ("/v1/page", ["not", "an", "object"]),
    ]
    out = []
    for path, body in cases:
        answer = client.post(prefix + path, json=body, headers={"Origin": "https://shop.example"})
        out.append((answer.status_code, answer.json(), answer.headers.get("access-control-allow-origin")))
    preflight = client.options(prefix + "/v1/t", headers={
        "Origin": "https://shop.example", "Access-Control-Request-Method": "POST"})
    out.append((preflight.status_code, {}, preflight.headers.get("access-control-allow-origin")))
    wrong_method = client.get(prefix + "/v1/track")
    out.append((wrong_method.status_code, wrong_method.json(), wrong_method.headers.get("allow")))
    return out


def test_tracking_paths_answer_the_same_through_the_shortcut_and_the_router(app):
    engine = app.state.engine
    key = workspace.create_source(engine, "Site")["write_key"]
    assert "/v1/t" in app.fast_paths and "/v1/batch" in app.fast_paths
    with TestClient(app) as fast, TestClient(app, root_path="/sb") as routed:
        through_shortcut = _answers(fast, "", key)
        through_router = _answers(routed, "/sb", key)
    assert through_shortcut == through_router
    assert [status for status, _, _ in through_shortcut] == [200, 200, 200, 401, 400, 400, 204, 405]
    assert all(cors == "https://shop.example" for _, _, cors in through_shortcut[:7])
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(events.events)).scalar_one() == 6


def test_only_exact_tracking_paths_are_short_cut(app):
    assert all(path.startswith("/v1/") for path in app.fast_paths)
    with TestClient(app) as client:
        for path in ("/v1/tracks", "/v1//track", "/v1/T", "/v2/track"):
            answer = client.post(path, json={})
            assert answer.status_code == 404, path
            assert answer.json()["code"] == "not_found"
        assert client.get("/healthz").status_code == 200  # other routes are untouched


def _bundle_answers(client: TestClient, prefix: str, source: dict) -> list[tuple]:
    """Status, the headers a browser or CDN reads, and the body, of bundle requests."""
    base = f"{prefix}/analytics.js/v1/{source['write_key']}"
    out = []

    def keep(answer):
        headers = {k: answer.headers.get(k) for k in ("etag", "content-encoding", "cache-control", "vary", "allow")}
        body = answer.content.replace(prefix.encode(), b"") if prefix else answer.content  # error texts name the path
        out.append((answer.status_code, headers, body))
        return answer

    plain = keep(client.get(f"{base}/analytics.min.js", headers={"Accept-Encoding": "identity"}))
    keep(client.get(f"{base}/analytics.min.js", headers={"Accept-Encoding": "gzip"}))
    keep(client.get(f"{base}/analytics.min.js",
                    headers={"Accept-Encoding": "identity", "If-None-Match": plain.headers["etag"]}))
    keep(client.head(f"{base}/analytics.min.js", headers={"Accept-Encoding": "identity"}))
    keep(client.get(f"{base}/analytics.nothex.min.js"))
    keep(client.get(f"{prefix}/analytics.js/v1/no-such-key/analytics.min.js"))
    keep(client.post(f"{base}/analytics.min.js"))  # the router's 405, not the bundle
    keep(client.get(f"{prefix}/analytics.js/v1/plugins/nothing.js"))  # the plugins route, not a key
    return out


def test_the_bundle_answers_the_same_through_the_shortcut_and_the_router(app):
    source = workspace.create_source(app.state.engine, "Shop")
    workspace.add_destination(app.state.engine, source["id"], slug="google_analytics_4", mode="device",
                              enabled=True, settings={"measurement_id": "G-SHORT1"})
    with TestClient(app) as fast, TestClient(app, root_path="/sb") as routed:
        through_shortcut = _bundle_answers(fast, "", source)
        through_router = _bundle_answers(routed, "/sb", source)
    assert through_shortcut == through_router
    assert [status for status, _, _ in through_shortcut] == [200, 200, 304, 200, 404, 404, 405, 404]
    assert b"G-SHORT1" in through_shortcut[0][2]
