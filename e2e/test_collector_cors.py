"""Real Chromium, a page on one origin, the collector on another: the CORS preflight that
analytics-next ≥ 1.84 triggers (Authorization + X-Retry-Count) succeeds, the event arrives,
and the page can read our error answers too."""

from __future__ import annotations

import http.server
import threading

import pytest

from server.store import events, open_store, workspace

PAGE = b"""<!doctype html><html><head><title>shop</title></head><body>shop</body></html>"""


class _PageHandler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 - the stdlib's name
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(PAGE)))
        self.end_headers()
        self.wfile.write(PAGE)

    def log_message(self, *args):  # keep test output clean
        pass


@pytest.fixture
def page_origin():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _PageHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


SEND = """async ([url, key, body, extraHeaders]) => {
    const headers = {"Content-Type": "text/plain", ...extraHeaders};
    if (key) headers["Authorization"] = "Basic " + btoa(key + ":");
    const response = await fetch(url, {method: "POST", headers, body: JSON.stringify(body)});
    return {status: response.status, body: await response.json(),
            retryAfter: response.headers.get("x-ratelimit-reset")};
}"""


def test_a_cross_origin_send_with_authorization_is_preflighted_and_stored(
    page, live_server_factory, tmp_path, page_origin
):
    url = f"sqlite:///{tmp_path / 'cors.db'}"
    engine = open_store(url)
    source = workspace.create_source(engine, "Shop")
    collector = live_server_factory(url, SWITCHBOARD_DELIVERY_WORKERS="false", SWITCHBOARD_RATE_LIMIT="2")

    cdp = page.context.new_cdp_session(page)
    cdp.send("Network.enable")
    preflights: list[dict] = []
    cdp.on("Network.requestWillBeSent",
           lambda e: preflights.append(e["request"]) if e["request"]["method"] == "OPTIONS" else None)

    page.goto(page_origin + "/")
    event = {"type": "track", "event": "Added to Cart", "anonymousId": "anon-1", "messageId": "cors-1",
             "properties": {"sku": "A-1"}, "timestamp": "2026-05-01T10:00:00.000Z", "sentAt": "2026-05-01T10:00:00.000Z"}
    result = page.evaluate(SEND, [collector.url + "/v1/t", source["write_key"], event, {"X-Retry-Count": "1"}])
    assert result["status"] == 200 and result["body"] == {"success": True}

    assert any(p["url"] == collector.url + "/v1/t" for p in preflights), preflights
    [stored] = events.list_events(engine, source["id"])
    assert stored["message_id"] == "cors-1"
    assert stored["event"]["event"] == "Added to Cart" and stored["event"]["properties"] == {"sku": "A-1"}
    assert stored["event"]["context"]["ip"] == "127.0.0.1"

    # Errors carry CORS headers too: the page can read the code (and, on 429, the reset header).
    refused = page.evaluate(SEND, [collector.url + "/v1/t", "wrong-key", event, {}])
    assert refused["status"] == 401 and refused["body"]["code"] == "invalid_write_key"
    limited = None
    for n in range(4):
        answer = page.evaluate(SEND, [collector.url + "/v1/t", source["write_key"],
                                      {**event, "messageId": f"burst-{n}"}, {}])
        if answer["status"] == 429:
            limited = answer
            break
    assert limited is not None and limited["body"]["code"] == "rate_limited"
    assert int(limited["retryAfter"]) >= 1
    engine.dispose()
