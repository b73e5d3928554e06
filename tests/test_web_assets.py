"""server/web/assets.py: ``/static`` serves the web app's files (ranges too) but not the package's
Python, and every 4xx it answers — a Range it cannot serve included — is JSON with a code and a
message. In process (Starlette's TestClient) on the web plane alone."""

from __future__ import annotations

from pathlib import Path

import pytest
from starlette.testclient import TestClient

from server.app import create_app
from server.config import Config
from server.store import open_store
from server.web.assets import STATIC

CSS = (Path(STATIC) / "app.css").read_bytes()


@pytest.fixture
def web(sqlite_url):
    engine = open_store(sqlite_url)
    app = create_app(Config(database_url=sqlite_url, delivery_workers=False), engine=engine, planes=["server.web"])
    with TestClient(app) as client:
        yield client
    engine.dispose()


def assert_json_error(answer, status: int, code: str, *words: str) -> dict:
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"] == "application/json"
    body = answer.json()
    assert body["code"] == code and body["error"]["code"] == code, body
    for word in words:
        assert word in body["message"], body["message"]
    assert int(answer.headers["content-length"]) == len(answer.content)
    return body


def test_static_serves_assets_but_not_the_package_python(web):
    assert web.get("/static/app.css").content == CSS
    for path in ("/static/__init__.py", "/static/__pycache__/__init__.cpython-311.pyc", "/static/no-such.css"):
        assert_json_error(web.get(path), 404, "not_found")


def test_ranges_are_served(web):
    part = web.get("/static/app.css", headers={"Range": "bytes=10-19"})
    assert part.status_code == 206 and part.content == CSS[10:20]
    assert part.headers["content-range"] == f"bytes 10-19/{len(CSS)}"
    tail = web.get("/static/app.css", headers={"Range": "bytes=-5"})
    assert tail.status_code == 206 and tail.content == CSS[-5:]


@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_a_range_beyond_the_file_is_a_json_416_that_keeps_its_content_range(web, method):
    # Starlette answered these itself, as an empty text/plain 416.
    answer = web.request(method, "/static/app.css", headers={"Range": "bytes=99999999-"})
    assert answer.headers["content-range"] == f"bytes */{len(CSS)}"
    assert answer.headers["x-content-type-options"] == "nosniff"
    if method == "GET":
        assert_json_error(answer, 416, "range_not_satisfiable", f"({len(CSS)} bytes)")
    else:
        assert answer.status_code == 416 and answer.headers["content-type"] == "application/json"


@pytest.mark.parametrize("value,words", [
    ("bytes=abc", "range must be requested"),
    ("items=0-1", "Only support bytes range"),
    ("bytes=5-1", "start must be less than end"),
    ("bytes", "Malformed range header"),
])
def test_a_range_header_that_does_not_parse_is_a_json_400(web, value, words):
    # Starlette answered these as text/plain ("Range header: range must be requested").
    answer = web.get("/static/app.css", headers={"Range": value})
    assert_json_error(answer, 400, "invalid_range", words)
    assert answer.headers["x-content-type-options"] == "nosniff"
